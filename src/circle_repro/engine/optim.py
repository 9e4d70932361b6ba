"""Optimisation of a run: the optimiser wrapper (mixed precision on any device) and the
optimiser / learning-rate schedule configs built from an experiment's ``train:`` section.

mmengine's ``AmpOptimWrapper`` refuses to run without a GPU. :class:`MixedPrecisionOptimWrapper`
does the same job on the device the parameters live on: ``torch.autocast(device, dtype)``
around the forward pass (model and loss; the losses compute their similarities and logits in
float32 with autocast off), and for fp16 a ``torch.amp.GradScaler`` for that device (dynamic
loss scaling: an overflowing step is skipped and the scale halved). bf16 has the range of
float32 and needs no scaling. On a CUDA device this is exactly the CUDA autocast + CUDA
GradScaler path of ``AmpOptimWrapper``; on the CPU it is the CPU autocast and CPU GradScaler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``train.amp`` values -> autocast dtype (None: full precision)."""

DEFAULT_WARMUP_START_FACTOR = 0.001


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` with autocast on the parameters' device, and loss scaling for fp16.

    ``dtype``: "bfloat16" or "float16". ``loss_scale`` (fp16 only): "dynamic" (GradScaler
    defaults), a float (a static initial scale, as mmengine's), or a dict of GradScaler
    arguments. Gradient clipping (``clip_grad``) unscales the gradients first.
    """

    def __init__(
        self, dtype: str | torch.dtype = "bfloat16", loss_scale: str | float | dict = "dynamic", **kwargs: Any
    ):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"MixedPrecisionOptimWrapper dtype must be bfloat16 or float16, got {dtype!r}")
        self.cast_dtype: torch.dtype = dtype
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.device_type = params[0].device.type if params else "cpu"
        self._scale_update_param: float | None = None
        self.loss_scaler: torch.amp.GradScaler | None = None
        if dtype == torch.float16:
            if loss_scale == "dynamic":
                self.loss_scaler = torch.amp.GradScaler(self.device_type)
            elif isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
                self._scale_update_param = float(loss_scale)
                self.loss_scaler = torch.amp.GradScaler(self.device_type, init_scale=float(loss_scale))
            elif isinstance(loss_scale, Mapping):
                self.loss_scaler = torch.amp.GradScaler(self.device_type, **loss_scale)
            else:
                raise TypeError(f'loss_scale must be "dynamic", a float or a dict, got {loss_scale!r}')

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        if "base_param_settings" in state_dict:
            self.base_param_settings = state_dict.pop("base_param_settings")
        self.optimizer.load_state_dict(state_dict)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(device_type=self.device_type, dtype=self.cast_dtype):
            yield


def optim_wrapper_config(train: Mapping[str, Any]) -> dict[str, Any]:
    """The mmengine ``optim_wrapper`` config of a ``train:`` section (optimizer, amp, grad_clip)."""
    optimizer = dict(train["optimizer"])
    config: dict[str, Any] = {"type": "OptimWrapper", "optimizer": optimizer}
    amp = train.get("amp", "none")
    if amp not in AMP_DTYPES:
        raise ValueError(f"train.amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    if AMP_DTYPES[amp] is not None:
        config = {
            "type": "MixedPrecisionOptimWrapper",
            "dtype": str(AMP_DTYPES[amp]).removeprefix("torch."),
            "optimizer": optimizer,
        }
    if train.get("grad_clip"):
        config["clip_grad"] = {"max_norm": float(train["grad_clip"]["max_norm"]), "norm_type": 2}
    return config


def total_iterations(train: Mapping[str, Any], iterations_per_epoch: int) -> int:
    """Optimiser steps of the whole run: ``iterations``, or ``epochs`` × iterations per epoch."""
    if "iterations" in train:
        return int(train["iterations"])
    return int(train["epochs"]) * int(iterations_per_epoch)


def param_scheduler_config(train: Mapping[str, Any], total_iters: int) -> list[dict[str, Any]]:
    """mmengine param schedulers (all stepped per iteration) of a ``train:`` section.

    * ``warmup: {iterations: W, start_factor: f}``: the lr rises linearly from f·lr to lr over
      the first W iterations (mmengine LinearLR);
    * ``lr_schedule: {type: multistep, milestones: [fractions], gamma}``: the lr is multiplied
      by gamma at each milestone, ``round(fraction × total iterations)`` (the face recipe:
      182k iterations, ÷10 at 0.5 / 0.7 / 0.9);
    * ``lr_schedule: {type: cosine, eta_min}``: cosine annealing from lr to eta_min over the
      iterations after the warm-up.
    """
    if total_iters < 1:
        raise ValueError(f"a run needs at least one iteration, got {total_iters}")
    schedulers: list[dict[str, Any]] = []
    warmup = int((train.get("warmup") or {}).get("iterations", 0))
    if warmup:
        if warmup >= total_iters:
            raise ValueError(
                f"train.warmup.iterations ({warmup}) must be fewer than the run's {total_iters} iterations"
            )
        start_factor = float(train["warmup"].get("start_factor", DEFAULT_WARMUP_START_FACTOR))
        schedulers.append(
            dict(type="LinearLR", start_factor=start_factor, end_factor=1.0, by_epoch=False, begin=0, end=warmup)
        )
    schedule = train.get("lr_schedule")
    if schedule is None:
        return schedulers
    if schedule["type"] == "multistep":
        fractions = [float(f) for f in schedule["milestones"]]
        if any(not 0 < f < 1 for f in fractions) or fractions != sorted(set(fractions)):
            raise ValueError(f"train.lr_schedule.milestones must be increasing fractions in (0, 1), got {fractions}")
        milestones = [round(f * total_iters) for f in fractions]
        schedulers.append(
            dict(
                type="MultiStepLR",
                milestones=milestones,
                gamma=float(schedule.get("gamma", 0.1)),
                by_epoch=False,
                begin=0,
                end=total_iters,
            )
        )
    elif schedule["type"] == "cosine":
        schedulers.append(
            dict(
                type="CosineAnnealingLR",
                T_max=total_iters - warmup,
                eta_min=float(schedule.get("eta_min", 0.0)),
                by_epoch=False,
                begin=warmup,
                end=total_iters,
            )
        )
    else:
        raise ValueError(f"train.lr_schedule.type must be multistep or cosine, got {schedule['type']!r}")
    return schedulers
