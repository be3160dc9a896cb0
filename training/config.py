"""One YAML/TOML file per run, validated, with `key.path=value` overrides from the command line.

Data paths in the file are relative to the file (so a config travels with its data); output and
run directories, and paths given as overrides, are relative to the current directory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.readers import Format

BUNDLED = Path(__file__).with_name("configs")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


# A path as a shell user writes it: `~` is their home, in the file and in overrides alike.
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


def _user_model(name: str | None) -> str | None:
    """A model directory given as ~/...; hub ids never start with ~."""
    return os.path.expanduser(name) if name and name.startswith("~") else name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelegramConfig(_Strict):
    me: str | None = None  # name or from_id the model learns to be; default: the exporter in a 1:1 chat
    gap: str | float = "30m"  # new conversation after this pause: seconds, 45m / 6h / 2d, or "median"
    drop_senders: list[str] = []


class SourceConfig(_Strict):
    path: UserPath
    format: Format = "auto"
    persona: list[str] = []  # used where the format carries no persona of its own
    telegram: TelegramConfig = TelegramConfig()


class DataConfig(_Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    context_turns: int = Field(4, ge=1)  # previous turns the model sees before each reply
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    skip_malformed: bool = False  # skip and count malformed records instead of stopping at the first
    max_prompt_tokens: int | None = None  # default: inference.prompt.default_prompt_budget, as at serving time
    max_response_tokens: int = Field(64, ge=2)


class ScratchConfig(_Strict):
    """A new model: a small GPT-2 (causal) or BlenderBot (seq2seq) shape, BPE tokenizer trained on the data."""

    family: Literal["causal", "seq2seq"] = "causal"
    vocab_size: int = Field(4000, ge=300)
    layers: int = Field(4, ge=1)
    hidden: int = Field(256, ge=8)
    heads: int = Field(4, ge=1)
    ffn: int | None = None  # default 4 * hidden
    positions: int = Field(512, ge=32)
    dropout: float = 0.1


class DistractorConfig(_Strict):
    """GPT2DoubleHeadsModel: also learn to pick the true reply among `num_candidates` (others drawn at random)."""

    enabled: bool = False
    num_candidates: int = Field(2, ge=2)
    loss_weight: float = 1.0  # weight of the multiple-choice loss beside the language-model loss


class ModelConfig(_Strict):
    name_or_path: Annotated[str | None, AfterValidator(_user_model)] = None  # a hub id or a local directory
    scratch: ScratchConfig | None = None
    distractor: DistractorConfig = DistractorConfig()

    @model_validator(mode="after")
    def _one_start(self) -> ModelConfig:
        if (self.name_or_path is None) == (self.scratch is None):
            raise ValueError("set exactly one of model.name_or_path (fine-tune) or model.scratch (new model)")
        return self


class BatchingConfig(_Strict):
    mode: Literal["token_budget", "fixed", "static"] = "token_budget"
    max_tokens: int = Field(4096, ge=16)  # token_budget: padded tokens per batch (inputs + labels for seq2seq)
    batch_size: int = Field(16, ge=1)  # fixed and static modes
    block_size: int = Field(128, ge=8)  # static: every sequence padded up to a bucket of at most this length
    pad_to_multiple_of: int | None = Field(8, ge=1)  # static: bucket step (= block_size for one shape only)
    overflow: Literal["truncate", "drop"] = "truncate"  # static: what to do with examples longer than block_size


class TrainConfig(_Strict):
    device: Literal["auto", "cpu", "cuda", "hpu"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where supported on cuda/hpu, fp32 on cpu
    max_steps: int = Field(1000, ge=1)
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    lr_scheduler: str = "linear"
    gradient_accumulation_steps: int = Field(1, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    max_grad_norm: float = 1.0
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = None  # default: evaluate at the end only
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = 2
    dataloader_workers: int = Field(0, ge=0)
    torch_compile: bool = False  # on HPU this uses transformers' "hpu_backend"


class EvalConfig(_Strict):
    prompts: list[str] = [
        "The shelling near our town went on all night and I could not sleep.",
        "My grandmother died last week and I miss her so much.",
        "I have an exam tomorrow and I am really stressed.",
        "I feel so lonely in the evenings.",
        "What do you like to do in your free time?",
    ]
    persona: list[str] = ["I am a volunteer listener on a support line."]
    sample_max_new_tokens: int = 40
    generation: dict[str, Any] = {}  # generation_config values saved with the model, over the family defaults


class RunConfig(_Strict):
    name: str
    seed: int = 1234
    output_dir: UserPath  # the model directory the worker and the bot load
    run_dir: UserPath  # checkpoints, metrics log, sample replies
    data: DataConfig
    model: ModelConfig
    batching: BatchingConfig = BatchingConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _compatible(self) -> RunConfig:
        if self.model.distractor.enabled and self.train.label_smoothing:
            raise ValueError("label_smoothing is not supported together with the distractor head")
        if self.model.distractor.enabled and self.model.scratch and self.model.scratch.family != "causal":
            raise ValueError("the distractor head is a GPT-2 (causal) head")
        b = self.batching
        if b.mode == "static" and b.pad_to_multiple_of and b.block_size % b.pad_to_multiple_of:
            raise ValueError("batching.block_size must be a multiple of batching.pad_to_multiple_of in static mode")
        return self


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Data paths and local model paths are relative to the config file; output_dir and run_dir stay
    relative to the current directory (var/ of the checkout the command runs in)."""
    for source in (data.get("data") or {}).get("sources") or []:
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            source["path"] = os.path.normpath(base / Path(source["path"]).expanduser())
    model = data.get("model") or {}
    if isinstance(model.get("name_or_path"), str) and model["name_or_path"].startswith((".", "/")):
        model["name_or_path"] = os.path.normpath(base / model["name_or_path"])


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Set `a.b.0.c=value` (the value parsed as YAML: numbers, booleans, lists) in the raw mapping.
    A value YAML cannot parse (`me=@olena`, `gap=*`) is taken as the string it is, as a shell user means it;
    validation still names the key when a string is not what it wants."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key}: {part!r} is not an index of the list at {'.'.join(parts[:i])}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is not a mapping or list")


def find_config(name: str) -> Path:
    """A path, or the name of a bundled config ("demo" -> training/configs/demo.yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (BUNDLED / name, BUNDLED / f"{name}.yaml", BUNDLED / f"{name}.toml"):
        if candidate.is_file():
            return candidate
    bundled = ", ".join(sorted(p.stem for p in BUNDLED.glob("*.y*ml")))
    raise ConfigError(f"config {name!r} not found (bundled: {bundled})")


def load_config(name: str, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
    """Read, resolve and validate one run's config with command-line overrides applied."""
    path = find_config(name)
    data = _read(path)
    _resolve_paths(data, path.parent)
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path}: " + "; ".join(lines)) from None
