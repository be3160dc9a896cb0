"""Tiny end-to-end runs: both families learn, the output loads where the worker loads it, resume, CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

from bot.cli import main
from inference.api import ChatMessage, GenerationParams
from inference.engine import load_model
from inference.generation import family_defaults
from tests.training_fixtures import REPO, tiny_config, tiny_config_file
from training.pipeline import make_trainer, prepare, run


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
# The run's samples ask for 8 new tokens, under BlenderBot's minimum of 20: it must be lowered, as the worker does.
@pytest.mark.filterwarnings("error:Unfeasible length constraints")
def test_tiny_run_learns_and_exports_a_loadable_model(tmp_path: Path, family: str) -> None:
    config = tiny_config(tmp_path, family)
    metrics = run(config)
    assert metrics["final"]["eval_loss"] < metrics["initial"]["eval_loss"] - 1.0
    assert metrics["steps"] == 30

    out = config.output_dir
    auto = AutoModelForCausalLM if family == "causal" else AutoModelForSeq2SeqLM
    model = auto.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    saved = GenerationConfig.from_pretrained(out)
    for key, value in family_defaults(family).items():  # type: ignore[arg-type]
        assert getattr(saved, key) == value
    assert json.loads((out / "metrics.json").read_text())["final"] == metrics["final"]
    assert "perplexity" in (out / "README.md").read_text()
    assert model.config.vocab_size <= 400

    engine = load_model(str(out), device="cpu")
    prompt = engine.prompt_ids(
        [ChatMessage("system", "I am a volunteer listener."), ChatMessage("user", "I feel so alone.")]
    )
    generation, limit = engine.request(GenerationParams(max_tokens=6, temperature=0), len(prompt))
    (reply,) = engine.generate([prompt], generation, [limit])
    assert reply.completion_tokens > 0

    logged = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in logged) and logged[-1]["eval_loss"] == metrics["final"]["eval_loss"]
    assert (
        json.loads((config.run_dir / "samples.jsonl").read_text().splitlines()[0])["prompt"] == config.eval.prompts[0]
    )


def test_resume_continues_where_the_checkpoint_left_off(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, overrides=["train.max_steps=12", "train.save_steps=6", "train.save_total_limit=null"]
    )
    whole = run(config)
    checkpoints = config.run_dir / "checkpoints"
    shutil.rmtree(checkpoints / "checkpoint-12")  # as if the run had died after step 6
    shutil.rmtree(config.output_dir)
    resumed = run(config, resume=True)
    assert resumed["steps"] == 12
    assert resumed["final"]["eval_loss"] == pytest.approx(whole["final"]["eval_loss"], rel=1e-4)
    assert (config.output_dir / "config.json").exists()


def test_served_model_cuts_prompts_with_the_budget_it_was_trained_with(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, overrides=["data.max_prompt_tokens=100", "train.max_steps=2"])
    run(config)
    assert load_model(str(config.output_dir), device="cpu").prompts.max_prompt_tokens == 100
    assert load_model(str(config.output_dir), device="cpu", prompt_budget=60).prompts.max_prompt_tokens == 60


def test_distractor_head_trains_and_exports_a_plain_lm(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, overrides=["model.distractor.enabled=true", "model.distractor.loss_weight=0.5", "train.max_steps=10"]
    )
    metrics = run(config)
    assert metrics["final"]["eval_loss"] < metrics["initial"]["eval_loss"]
    exported = json.loads((config.output_dir / "config.json").read_text())
    assert exported["architectures"] == ["GPT2LMHeadModel"]


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_config_file(tmp_path)
    assert main(["train", "--config", str(path), "--dry-run", "train.max_steps=99"]) == 0
    out = capsys.readouterr().out
    for words in ("plan for run 'tiny-causal'", "dialogues", "train /", "batches per epoch", "padding", "99 steps"):
        assert words in out
    assert not (tmp_path / "model").exists() and not (tmp_path / "run" / "checkpoints").exists()
    assert main(["train", "--config", str(path), "--dry-run", "data.max_prompt_tokens=250"]) == 2
    assert "do not fit the model's 256 positions" in capsys.readouterr().err


def test_cli_reports_bad_data_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_config_file(tmp_path)
    data = tmp_path / "dialogues.jsonl"
    data.write_text(data.read_text() + "{not json\n")
    assert main(["train", "--config", str(path), "--dry-run"]) == 2
    assert f"{data}:61: invalid JSON" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "--dry-run", "data.skip_malformed=true"]) == 0
    assert "1 malformed skipped" in capsys.readouterr().out


def test_two_process_ddp_on_gloo(tmp_path: Path) -> None:
    path = tiny_config_file(tmp_path, train={"max_steps": 8})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "bot.cli",
            "train",
            "--config",
            str(path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    assert metrics["final"]["eval_loss"] < metrics["initial"]["eval_loss"]


def test_evaluation_shows_progress_on_the_main_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trainer = make_trainer(prepare(tiny_config(tmp_path)), None)
    capsys.readouterr()
    trainer.evaluate()
    assert re.search(r"evaluating: .*\d+/\d+ \[", capsys.readouterr().err)
    trainer.args.disable_tqdm = True
    trainer.evaluate()
    assert "evaluating" not in capsys.readouterr().err
