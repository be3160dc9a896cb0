"""HF Trainer with the pipeline's batch plans, token-weighted evaluation and the optional distractor head."""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from training.batching import BatchPlan
from training.evaluation import loss_metrics, response_nll

# What a damaged or unreadable checkpoint raises: torch.load's RuntimeError, pickle's, safetensors', json's, the OS's.
CHECKPOINT_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError, json.JSONDecodeError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written; the message names its directory and what to do."""


@contextmanager
def checkpoint_io(directory: str | Path, action: str, advice: str) -> Iterator[None]:
    """Turn the many ways reading or writing a checkpoint fails into one line a user can act on."""
    try:
        yield
    except CHECKPOINT_ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot {action} checkpoint {directory}: {reason}; {advice}") from None


RESUME_ADVICE = (
    "if it is damaged (a run stopped while saving it), delete it to resume from an earlier one, or run without --resume"
)


class ResponseTrainer(Trainer):
    """Trains on BatchPlan batches (token budget / fixed / static) instead of a fixed per-device size.

    Accelerate shards the plan's batches across processes (each rank takes every world-size-th batch),
    and the Trainer calls `set_epoch` on the plan, so DDP ranks and resumed runs see the same order.
    """

    def __init__(
        self,
        *args: Any,
        train_plan: BatchPlan,
        eval_plan: BatchPlan,
        shift_labels: bool,
        mc_weight: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.train_plan = train_plan
        self.eval_plan = eval_plan
        self.shift_labels = shift_labels
        self.mc_weight = mc_weight
        self.eval_seconds = 0.0  # time spent in evaluate(), so training time can be told apart
        if mc_weight is not None:
            # Our combined loss is a per-batch mean: let the Trainer scale it for gradient accumulation.
            self.model_accepts_loss_kwargs = False

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.train_plan,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        with checkpoint_io(resume_from_checkpoint, "resume from", RESUME_ADVICE):
            # train() reads the state right after the weights, outside any method we can wrap.
            json.loads((Path(resume_from_checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        with checkpoint_io(checkpoint or "", "resume from", RESUME_ADVICE):
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_scaler(self, checkpoint: str | None) -> None:
        with checkpoint_io(checkpoint or "", "resume from", RESUME_ADVICE):
            super()._load_scaler(checkpoint)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        with checkpoint_io(checkpoint or "", "resume from", RESUME_ADVICE):
            super()._load_rng_state(checkpoint)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        directory = os.path.join(self.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        advice = "free space or fix permissions there; --resume continues from the last whole checkpoint"
        with checkpoint_io(directory, "write", advice):
            super()._save_checkpoint(model, trial)

    def compute_loss(
        self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.mc_weight is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs)
        loss = outputs.loss + self.mc_weight * outputs.mc_loss
        return (loss, outputs) if return_outputs else loss

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Token-weighted loss over this rank's share of the validation batches, summed over ranks; a progress
        bar on the main process, since a large validation set takes minutes with no other sign of life."""
        started = time.perf_counter()
        batches = tqdm(
            list(self.eval_plan)[self.args.process_index :: self.args.world_size],
            desc="evaluating",
            unit=" batches",
            leave=False,
            disable=self.args.disable_tqdm or not self.is_world_process_zero(),
        )
        with self.autocast_smart_context_manager():
            total, count = response_nll(
                self.model,
                (self._prepare_inputs(self.data_collator([self.eval_dataset[i] for i in b])) for b in batches),
                self.shift_labels,
            )
        sums = torch.tensor([total, count], dtype=torch.float64, device=self.args.device)
        if self.args.world_size > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
        metrics = loss_metrics(float(sums[0]), int(sums[1]), metric_key_prefix)
        self.eval_seconds += time.perf_counter() - started
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class JsonlMetrics(TrainerCallback):
    """Appends every logged dict (loss, lr, eval metrics) as one JSON line, for plots and CI."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(
                    json.dumps({"time": round(time.time(), 3), "step": state.global_step, "epoch": state.epoch, **logs})
                    + "\n"
                )
