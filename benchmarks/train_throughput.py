"""Training throughput of each backbone, in images/s: forward + loss + backward + optimizer step.

    python benchmarks/train_throughput.py --device cuda --amp bf16 --channels-last --batch 64
    python benchmarks/train_throughput.py --device cpu --width 0.125 --input-scale 0.5 --batch 8 \\
        --iters 2 --out runs/throughput_cpu.json                     # reduced size, a minute or two

Each model runs at its real input size times ``--input-scale`` (rounded to a multiple of 32):
ResNet-50 256x128 (re-ID), MGN 384x128 (the MGN paper), IResNet-34/100 112x112 (faces),
BN-Inception 227x227 (retrieval crops), small_cnn 28x28 (the demo, always full size). ``--width``
multiplies the channel counts of all but small_cnn (1.0: the real networks).

One step: embeddings = backbone(images); pair-wise Circle loss (m=0.25, gamma=256) over P x K
labels with K=4; backward; SGD (lr 0.01, momentum 0.9, weight decay 5e-4). Two loops drive the
same model, each with its own optimizer:
  * plain:    torch.autocast (with a GradScaler for fp16 only), loss.backward(), step, zero_grad;
  * mmengine: OptimWrapper, or AmpOptimWrapper with --amp (mmengine's default dynamic loss
              scale), ``optim_context`` + ``update_params``, which is what our training calls.
After ``--warmup`` steps of each, ``--repeats`` rounds time ``--iters`` steps of each loop in
turn, in alternating order (so load from other processes and drift hit both alike); a figure is
the median round.
overhead = plain images/s / mmengine images/s (above 1: the mmengine path is slower).

Without mmengine installed (a GPU box with torch only) the plain loop runs alone and the output
says so. mmengine's AmpOptimWrapper refuses the CPU, so ``--device cpu --amp ...`` is plain-only.
Peak memory (CUDA) is torch.cuda.max_memory_allocated over both loops. Compare ratios and
figures from the same device only. ``benchmarks/compare_throughput.py RESULTS.json`` sets a CUDA
results file beside the published insightface / fast-reid figures in
``benchmarks/published_throughput.yaml``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import circle_repro  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from circle_repro.losses import CircleLoss
from circle_repro.models import build_backbone

try:
    import mmengine
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
except ImportError:
    mmengine = None

# name -> (input height, width, input channels, embedding dim)
MODELS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (256, 128, 3, 512),
    "mgn": (384, 128, 3, 2048),
    "iresnet34": (112, 112, 3, 512),
    "iresnet100": (112, 112, 3, 512),
    "bn_inception": (227, 227, 3, 512),
    "small_cnn": (28, 28, 1, 64),
}
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
K = 4  # images per class in a batch

Step = Callable[[], None]
Batch = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def scaled_size(size: int, scale: float) -> int:
    """``size * scale`` rounded to a multiple of 32 (which all backbones take); ``size`` at scale 1."""
    return size if scale == 1 else max(32, round(size * scale / 32) * 32)


def build(name: str, width: float, scale: float) -> tuple[nn.Module, tuple[int, int, int]]:
    """The backbone at the benchmark's width, and its (channels, height, width) input."""
    height, width_px, channels, embedding_dim = MODELS[name]
    options: dict[str, Any] = {}
    if name != "small_cnn":
        height, width_px = scaled_size(height, scale), scaled_size(width_px, scale)
        options["width"] = width
    if name.startswith("iresnet"):
        options["input_size"] = height
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=channels, embedding_dim=embedding_dim, **options)
    return model, (channels, height, width_px)


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(trainable, lr=0.01, momentum=0.9, weight_decay=5e-4)


def plain_step(model: nn.Module, batch: Batch, amp: torch.dtype | None, device: torch.device) -> Step:
    """One training step in plain PyTorch."""
    optimizer, loss_fn = _sgd(model), CircleLoss(m=0.25, gamma=256)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    images, labels = batch()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = loss_fn(model(images), labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def mmengine_step(model: nn.Module, batch: Batch, amp: torch.dtype | None) -> Step:
    """One training step through mmengine's optimizer wrapper."""
    wrapper = OptimWrapper(_sgd(model)) if amp is None else AmpOptimWrapper(optimizer=_sgd(model), dtype=amp)
    loss_fn = CircleLoss(m=0.25, gamma=256)
    images, labels = batch()

    def step() -> None:
        with wrapper.optim_context(model):
            loss = loss_fn(model(images), labels)
        wrapper.update_params(loss)

    return step


def measure(name: str, args: argparse.Namespace, device: torch.device, amp: torch.dtype | None) -> dict[str, Any]:
    """Images/s of each loop for one backbone (median over rounds), and peak CUDA memory."""
    model, (channels, height, width_px) = build(name, args.width, args.input_scale)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    generator = torch.Generator().manual_seed(1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(args.batch, channels, height, width_px, generator=generator)
        labels = (torch.arange(args.batch) // K)[torch.randperm(args.batch, generator=generator)]
        return images.to(device, memory_format=memory_format), labels.to(device)

    loops = {"plain": plain_step(model, batch, amp, device)}
    if mmengine is not None and (amp is None or device.type != "cpu"):
        loops["mmengine"] = mmengine_step(model, batch, amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in loops.values():
        for _ in range(args.warmup):
            step()
    rates: dict[str, list[float]] = {loop: [] for loop in loops}
    for round_index in range(args.repeats):
        order = list(loops.items())
        for loop, step in order if round_index % 2 == 0 else order[::-1]:
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.iters):
                step()
            _sync(device)
            rates[loop].append(args.batch * args.iters / (time.perf_counter() - start))
    result: dict[str, Any] = {
        "model": name,
        "input": [channels, height, width_px],
        "width": 1.0 if name == "small_cnn" else args.width,
        "params_millions": sum(p.numel() for p in model.parameters()) / 1e6,
        "images_per_s": {loop: statistics.median(values) for loop, values in rates.items()},
        "images_per_s_rounds": rates,
    }
    if "mmengine" in rates:
        result["overhead"] = result["images_per_s"]["plain"] / result["images_per_s"]["mmengine"]
    if device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none", help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="channels-last model and inputs")
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per round and loop")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1: real networks)")
    parser.add_argument("--input-scale", type=float, default=1.0, help="input size multiplier (1: real sizes)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, amp = torch.device(args.device), AMP_DTYPES[args.amp]

    if mmengine is None:
        comparison = "mmengine not installed: plain PyTorch loop only"
    elif amp is not None and device.type == "cpu":
        comparison = "mmengine's AmpOptimWrapper needs an accelerator: plain PyTorch loop only"
    else:
        wrapper = "AmpOptimWrapper" if amp else "OptimWrapper"
        comparison = f"plain PyTorch loop vs mmengine {mmengine.__version__} {wrapper}"
    header = {
        "device": device_name(device),
        "torch": torch.__version__,
        "mmengine": mmengine.__version__ if mmengine is not None else None,
        "threads": torch.get_num_threads(),
        "amp": args.amp,
        "channels_last": args.channels_last,
        "batch": args.batch,
        "iters": args.iters,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "comparison": comparison,
    }
    print(
        f"{header['device']} | torch {header['torch']} | {header['threads']} threads | amp {args.amp} | "
        f"channels_last {args.channels_last} | batch {args.batch} | {args.repeats} x {args.iters} steps"
    )
    print(comparison)
    print(f"{'model':>12} | {'input':>11} | width | params M | plain img/s | mmengine img/s | overhead | peak MiB")
    results = []
    for name in models:
        result = measure(name, args, device, amp)
        results.append(result)
        rates = result["images_per_s"]
        print(
            f"{name:>12} | {'x'.join(map(str, result['input'])):>11} | {result['width']:5.3g} | "
            f"{result['params_millions']:8.2f} | {rates['plain']:11.1f} | "
            f"{rates['mmengine'] if 'mmengine' in rates else float('nan'):14.1f} | "
            f"{result.get('overhead', float('nan')):8.3f} | {result.get('peak_memory_mib', float('nan')):8.0f}",
            flush=True,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**header, "results": results}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
