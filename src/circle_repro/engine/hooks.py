"""mmengine hooks of circle-repro: exact-resume RNG state, the NaN guard, throughput, validation
during training, and the checkpoint hook that writes checkpoints atomically and saves sharded heads whole."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from circle_repro.engine.checkpoint import (
    gather_sharded_state,
    insert_full_state,
    partial_name,
    prune_checkpoints,
    publish_checkpoint,
    shard_checkpoint,
    to_saved_layout,
    unwrap_model,
)
from circle_repro.engine.tracking import metric_key


@HOOKS.register_module()
class RngStateHook(Hook):
    """Store the Python, numpy and torch RNG states in each checkpoint and restore them on resume,
    so that a resumed run draws the same augmentations and batches as an uninterrupted one.

    The training DataLoader gets a generator of its own for the seed it draws whenever it starts its
    worker processes (on resume, or each epoch without persistent workers): those draws would otherwise
    move torch's RNG on at moments that differ between a resumed run and an uninterrupted one. The
    images' augmentations do not depend on that seed (:class:`~circle_repro.engine.train.ResumableSampler`).
    """

    def before_train(self, runner: Any) -> None:
        runner.train_loop.dataloader.generator = torch.Generator().manual_seed(runner.seed)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is None:
            runner.logger.warning("checkpoint has no RNG state; the resumed run will not be bit-identical")
            return
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stop training at the first iteration whose loss is NaN or infinite, naming the iteration,
    the output (``loss``...) and, under mixed precision, the autocast dtype.

    Under fp16 a non-finite *gradient* is not an error: the gradient scaler skips that step and
    lowers its scale. The loss itself is computed in float32 under autocast, so a non-finite loss
    means the run diverged.
    """

    priority = "HIGHEST"

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        for name, value in (outputs or {}).items():
            if not name.startswith("loss"):
                continue
            number = float(torch.as_tensor(value).detach().float())
            if math.isfinite(number):
                continue
            dtype = getattr(runner.optim_wrapper, "cast_dtype", None)
            precision = f" under {str(dtype).removeprefix('torch.')} autocast" if dtype is not None else ""
            hint = " (fp16 overflows easily: try amp: bf16)" if dtype == torch.float16 else ""
            raise FloatingPointError(
                f"{runner.experiment_name}: iteration {runner.iter + 1} (epoch {runner.epoch + 1}) gave "
                f"{name} = {number}{precision}; training stopped. Check the learning rate, the loss's gamma and "
                f"the input data{hint}; the last checkpoint is left for inspection."
            )


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Training images per second of all ranks together (a resumed run counts only its own
    iterations), left in the message hub as ``throughput_images_per_s``."""

    def before_train(self, runner: Any) -> None:
        self._start = (runner.iter, time.perf_counter())

    def after_train(self, runner: Any) -> None:
        start_iter, start_time = self._start
        images = (runner.iter - start_iter) * runner.train_dataloader.batch_size * runner.world_size
        runner.message_hub.update_info("throughput_images_per_s", images / max(time.perf_counter() - start_time, 1e-9))


@HOOKS.register_module()
class PeriodicValidationHook(Hook):
    """Every ``interval`` iterations and after the last one, run each validation set's protocol on the
    model as it is (rank 0; the other ranks wait) and log the metrics as ``val/<set>/<metric>``.

    ``sets`` maps a prepared data set under ``prepared_root`` to its ``evaluation:`` mapping. The RNG
    states are restored afterwards and the model is put back in training mode, so a run with
    validation trains exactly as one without.
    """

    priority = "LOW"

    def __init__(self, prepared_root: str, sets: dict[str, dict[str, Any]], interval: int) -> None:
        self.prepared_root, self.sets, self.interval = Path(prepared_root), sets, interval
        self._tests: dict[str, Any] = {}  # each set's TestSet, read at its first validation

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if not (self.every_n_train_iters(runner, self.interval) or self.is_last_train_iter(runner)):
            return
        if runner.rank == 0:
            self._validate(runner)
        if runner.world_size > 1:
            torch.distributed.barrier()

    def _validate(self, runner: Any) -> None:
        from circle_repro.engine.evaluate import evaluate_model
        from circle_repro.engine.protocols import TestSet

        model = unwrap_model(runner.model)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        python_state, numpy_state = random.getstate(), np.random.get_state()
        scalars = {}
        with torch.random.fork_rng(devices=devices):
            for name, evaluation in self.sets.items():
                if name not in self._tests:
                    self._tests[name] = TestSet.load(self.prepared_root / name)
                result = evaluate_model(model, self._tests[name], name, evaluation)
                scalars |= {f"val/{name}/{metric_key(metric)}": value for metric, value in result.metrics.items()}
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        model.train()
        runner.visualizer.add_scalars(scalars, step=runner.iter + 1)
        shown = ", ".join(f"{key.removeprefix('val/')} {value:.4f}" for key, value in scalars.items())
        runner.logger.info(f"validation at iteration {runner.iter + 1}: {shown}")


@HOOKS.register_module()
class FullStateCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, writing checkpoints atomically and saving sharded class-level heads whole.

    Each checkpoint is written under a temporary name, flushed and renamed
    (:func:`~circle_repro.engine.checkpoint.publish_checkpoint`). Checkpoints beyond ``max_keep_ckpts``
    are deleted, the newest complete one only after the next is in place: a kill at any moment leaves
    the last complete checkpoint. No ``last_checkpoint`` pointer is written; resuming finds the newest
    checkpoint by its file name. The message hub's history is saved as plain arrays, so that the
    checkpoint loads with ``weights_only=True``.

    Before rank 0 writes a checkpoint, every rank contributes its proxy shard and that shard's
    optimizer state (a collective: this runs on every rank), so the checkpoint holds the full
    model, as a single process would have it. On loading, each rank keeps its own rows.
    """

    _gathered: dict[str, Any] | None = None

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict) -> None:
        optimizer = getattr(runner.optim_wrapper, "optimizer", None)
        self._gathered = gather_sharded_state(runner.model, optimizer)
        name = self.filename_tmpl.format(step)
        pruning = is_main_process() and self.max_keep_ckpts > 0
        if pruning:  # make room, but keep the newest until this one is in place
            prune_checkpoints(self.out_dir, step, keep=max(self.max_keep_ckpts - 1, 1))
        try:
            runner.save_checkpoint(
                self.out_dir, partial_name(name), self.file_client_args, save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                backend_args=self.backend_args, **self.args,
            )  # fmt: skip
        finally:
            self._gathered = None
        self.last_ckpt = str(Path(self.out_dir) / name)  # what mmengine's save_last / save_best publish
        if is_main_process():
            publish_checkpoint(self.out_dir, name)
        if pruning:
            prune_checkpoints(self.out_dir, step, keep=self.max_keep_ckpts - 1)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self._gathered:
            insert_full_state(checkpoint, self._gathered)
        to_saved_layout(checkpoint)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        optimizer = getattr(runner.optim_wrapper, "optimizer", None)
        shard_checkpoint(checkpoint, unwrap_model(runner.model), optimizer)
