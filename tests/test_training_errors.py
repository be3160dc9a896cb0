"""What a user can get wrong before or around a run is refused up front in one line, and nothing of theirs is lost."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from transformers import Trainer

from bot.cli import main
from inference.synthetic import save_model
from tests.training_fixtures import tiny_config, tiny_config_file
from training.config import ConfigError, apply_override, load_config
from training.pipeline import run
from training.trainer import CheckpointError


def _dry_run(path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, str]:
    code = main(["train", "--config", str(path), "--dry-run", *overrides])
    err = capsys.readouterr().err
    assert code == 0 or ("Traceback" not in err and err.count("supportbot train: error:") == 1), err
    return code, err


def test_output_dir_that_is_not_ours_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_config_file(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "me.jpg").write_bytes(b"precious")
    code, err = _dry_run(path, capsys, f"output_dir={photos}")
    assert code == 2 and "is not empty and is not a model directory" in err
    assert (photos / "me.jpg").read_bytes() == b"precious"

    assert (
        "dialogues.jsonl, which exporting"
        in _dry_run(path, capsys, f"output_dir={tmp_path}", f"run_dir={tmp_path.parent / 'run-elsewhere'}")[1]
    )
    assert "holds" in _dry_run(path, capsys, f"output_dir={tmp_path / 'run'}")[1]
    assert "holds" in _dry_run(path, capsys, f"output_dir={tmp_path / 'm'}", f"run_dir={tmp_path / 'm' / 'run'}")[1]
    (tmp_path / "file").write_text("")
    assert "is a file" in _dry_run(path, capsys, f"output_dir={tmp_path / 'file'}")[1]

    ours = tmp_path / "model"  # an earlier model of this pipeline is replaced, as a new one is written
    ours.mkdir()
    for name in ("config.json", "metrics.json", "model.safetensors"):
        (ours / name).write_text("{}")
    assert _dry_run(path, capsys)[0] == 0

    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path)
    assert "no write permission" in _dry_run(path, capsys, f"output_dir={tmp_path / 'new' / 'model'}")[1]


def test_override_yaml_cannot_parse_is_taken_as_a_string(tmp_path: Path) -> None:
    raw: dict = {}
    for value in ("@olena", "*", "`x", "[1, 2"):
        apply_override(raw, f"a.me={value}")
        assert raw["a"]["me"] == value
    with pytest.raises(ConfigError, match=r"train.max_steps: Input should be a valid integer"):
        load_config(str(tiny_config_file(tmp_path)), ["train.max_steps=[1, 2"])
    config = load_config(str(tiny_config_file(tmp_path)), ["data.sources.0.telegram.me=@olena"])
    assert config.data.sources[0].telegram.me == "@olena"


def test_static_batching_that_leaves_nothing_to_train_on_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_config_file(tmp_path)
    code, err = _dry_run(path, capsys, "batching.mode=static", "batching.batch_size=512")
    assert code == 2 and "lower batching.batch_size" in err
    static = ("batching.mode=static", "batching.block_size=8", "batching.overflow=drop")
    code, err = _dry_run(path, capsys, *static)
    assert code == 2 and "no training example fits batching.block_size" in err


def test_model_not_on_this_machine_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_config_file(tmp_path)
    code, err = _dry_run(path, capsys, "model.scratch=null", "model.name_or_path=nobody/no-such-model")
    assert code == 2 and "'nobody/no-such-model' is not a local directory, and it could not be had" in err
    base = save_model("tiny-causal", tmp_path / "base")
    assert _dry_run(path, capsys, "model.scratch=null", f"model.name_or_path={base}")[0] == 0
    (base / "model.safetensors").unlink()
    code, err = _dry_run(path, capsys, "model.scratch=null", f"model.name_or_path={base}")
    assert code == 2 and f"model {base}: cannot load it" in err


def test_broken_checkpoint_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(tmp_path, overrides=["train.max_steps=4", "train.save_steps=2", "train.save_total_limit=null"])
    with pytest.raises(ValueError, match=r"--resume: no checkpoint in .*checkpoints yet"):
        run(config, resume=True)
    run(config)
    newest = config.run_dir / "checkpoints" / "checkpoint-4"
    damages = {
        "model.safetensors": lambda f: f.write_bytes(f.read_bytes()[:1000]),
        "trainer_state.json": lambda f: f.unlink(),
        "optimizer.pt": lambda f: f.write_bytes(f.read_bytes()[:100]),
    }
    for name, damage in damages.items():
        kept = (newest / name).read_bytes()
        damage(newest / name)
        with pytest.raises(CheckpointError, match=rf"cannot resume from checkpoint {newest}: .*delete it"):
            run(config, resume=True)
        (newest / name).write_bytes(kept)

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", no_space)
    shutil.rmtree(config.output_dir)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*checkpoint-2: .*No space left on device"):
        run(config)
