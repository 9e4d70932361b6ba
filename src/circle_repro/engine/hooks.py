"""mmengine hooks of circle-repro: exact-resume RNG state, the NaN guard and throughput."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RngStateHook(Hook):
    """Store the Python, numpy and torch RNG states in each checkpoint and restore them on resume,
    so that a resumed run draws the same augmentations and batches as an uninterrupted one."""

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
    """Stop training at the first iteration whose loss or logged statistic is NaN or infinite."""

    priority = "HIGHEST"

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        for name, value in (outputs or {}).items():
            if name.startswith("loss") and not math.isfinite(float(torch.as_tensor(value).detach())):
                raise FloatingPointError(
                    f"{runner.experiment_name}: iteration {runner.iter + 1} (epoch {runner.epoch + 1}) gave "
                    f"{name} = {float(torch.as_tensor(value).detach())}; training stopped. Check the learning rate, the loss's gamma and "
                    "the input data; the last checkpoint is left for inspection."
                )


@HOOKS.register_module()
class ThroughputHook(Hook):
    """Training images per second of this process (a resumed run counts only its own iterations),
    left in the message hub as ``throughput_images_per_s``."""

    def before_train(self, runner: Any) -> None:
        self._start = (runner.iter, time.perf_counter())

    def after_train(self, runner: Any) -> None:
        start_iter, start_time = self._start
        images = (runner.iter - start_iter) * runner.train_dataloader.batch_size
        runner.message_hub.update_info("throughput_images_per_s", images / max(time.perf_counter() - start_time, 1e-9))
