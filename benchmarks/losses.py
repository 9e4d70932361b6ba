"""Forward+backward cost of the losses on CPU, each against its baselines in the same run.

    python benchmarks/losses.py            # full sizes (a few minutes)
    python benchmarks/losses.py --quick    # small sizes, fewer repeats (well under a minute)

Two threads (``torch.set_num_threads(2)``), float32, d=512. Timings run in this one process:
after warm-up, every repeat times each implementation once, in turn (interleaved, so that
load from other processes hits all of them alike), and the table gives the **median** over
repeats, with the minimum in brackets. The target verdicts use the ratios of the minima (the
rule of Python's timeit: on a shared machine other processes only ever add time), with the
ratios of medians beside them. Implementations:

* pair-wise, B ∈ {128, 256, 512, 1024}, random P×K labels with K=4:
  ours ``CircleLoss`` vs pytorch-metric-learning ``CircleLoss`` (both m=0.25, γ=256) vs the
  matmul floor: S = X·Xᵀ forward plus its autograd backward (two matmuls) from a fixed
  upstream gradient — the similarity matrix alone, no normalisation, no loss;
* class-level, B=128, C ∈ {1000, 10000, 85742}: ours ``CircleClassifier`` (m=0.25, γ=256) vs
  ours ``AMSoftmaxClassifier`` (m=0.35, γ=64) vs PML ``CosFaceLoss`` (margin 0.35, scale 64)
  vs the floor: logits X·Wᵀ plus its backward to X and W from a fixed upstream gradient.

Peak memory: each (implementation, size) runs again in three fresh subprocesses (same threads; the smallest counts),
with glibc's mmap threshold pinned (``MALLOC_MMAP_THRESHOLD_=65536``) so freed tensors go back
to the OS and RSS tracks live tensors. After setup (inputs, parameters) and one warm-up step,
the parameter gradients are dropped, the kernel's RSS high-water mark is reset
(``/proc/self/clear_refs``), one forward+backward runs, and the reported figure is the peak
RSS (VmHWM) minus the RSS before the step, in MiB: activations, autograd buffers, temporaries
and the freshly allocated gradients (for the class-level heads, W.grad: C×512×4 bytes =
167 MiB at C=85,742). tracemalloc would not see torch's allocations. Where clear_refs is not
writable the figure is ``ru_maxrss`` minus the RSS before the step (an upper bound) and the
table says so.

Timings are wall-clock on whatever machine runs this; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import circle_repro  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_metric_learning import losses as pml_losses

from circle_repro.losses import AMSoftmaxClassifier, CircleClassifier, CircleLoss

DIM = 512
K = 4
THREADS = 2
FULL = dict(pair_sizes=[128, 256, 512, 1024], class_sizes=[1000, 10000, 85742], class_batch=128)
QUICK = dict(pair_sizes=[128, 256], class_sizes=[1000], class_batch=128)

PAIR_IMPLS = ["ours", "pml", "floor"]
CLASS_IMPLS = ["circle", "am_softmax", "pml_cosface", "floor"]

Step = Callable[[], None]

# Set from the command line: where the workloads run, and the autocast dtype (None: float32).
DEVICE = torch.device("cpu")
AMP: torch.dtype | None = None
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast() -> torch.autocast:
    return torch.autocast(DEVICE.type, dtype=AMP or torch.float32, enabled=AMP is not None)


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# --- workloads ---------------------------------------------------------------------------------


def pk_labels(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.arange(batch // K).repeat_interleave(K)[torch.randperm(batch, generator=gen)]


def pair_step(impl: str, batch: int) -> Step:
    """One forward+backward of a pair-wise implementation on a fresh P×K batch."""
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, DIM, generator=gen).to(DEVICE).requires_grad_(True)
    labels = pk_labels(batch, gen).to(DEVICE)
    if impl == "floor":
        upstream = torch.randn(batch, batch, generator=gen).to(DEVICE)

        def step() -> None:
            x.grad = None
            with _autocast():
                product = x @ x.T
            product.backward(upstream.to(product.dtype))

        return step
    loss_fn = CircleLoss(m=0.25, gamma=256) if impl == "ours" else pml_losses.CircleLoss(m=0.25, gamma=256)

    def step() -> None:
        x.grad = None
        with _autocast():
            loss = loss_fn(x, labels)
        loss.backward()

    return step


def class_step(impl: str, num_classes: int, batch: int) -> tuple[Step, list[torch.Tensor]]:
    """One forward+backward of a class-level head; also returns its parameters."""
    gen = torch.Generator().manual_seed(num_classes)
    x = torch.randn(batch, DIM, generator=gen).to(DEVICE).requires_grad_(True)
    labels = torch.randint(0, num_classes, (batch,), generator=gen).to(DEVICE)
    if impl == "floor":
        weight = torch.randn(num_classes, DIM, generator=gen).to(DEVICE).requires_grad_(True)
        upstream = torch.randn(batch, num_classes, generator=gen).to(DEVICE)

        def step() -> None:
            x.grad = weight.grad = None
            with _autocast():
                logits = x @ weight.T
            logits.backward(upstream.to(logits.dtype))

        return step, [weight]
    if impl == "circle":
        head = CircleClassifier(DIM, num_classes, m=0.25, gamma=256)
    elif impl == "am_softmax":
        head = AMSoftmaxClassifier(DIM, num_classes, m=0.35, gamma=64)
    else:
        head = pml_losses.CosFaceLoss(num_classes, DIM, margin=0.35, scale=64)
    head = head.to(DEVICE)
    params = list(head.parameters())

    def step() -> None:
        x.grad = None
        for p in params:
            p.grad = None
        with _autocast():
            loss = head(x, labels)
        loss.backward()

    return step, params


# --- timing ------------------------------------------------------------------------------------


def time_interleaved(steps: dict[str, Step], warmup: int, repeats: int) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _sync()
            times[name].append(time.perf_counter() - start)
    return times


# --- memory (subprocess) -----------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(kind: str, impl: str, size: int, class_batch: int) -> dict[str, float | bool]:
    """Peak RSS increase (MiB) of one forward+backward, measured in this (fresh) process."""
    torch.set_num_threads(THREADS)
    if kind == "pair":
        step, params = pair_step(impl, size), []
    else:
        step, params = class_step(impl, size, class_batch)
    step()  # warm-up: one-time allocations (thread pools, kernels' scratch)
    for p in params:
        p.grad = None
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
        exact = True
    except OSError:
        exact = False
    before = _rss_kib("VmRSS")
    step()
    peak = _rss_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mib": max(peak - before, 0) / 1024, "exact": exact}


MEMORY_PROBES = 3
"""Fresh subprocesses per CPU memory figure; the smallest counts (stray pages only ever add)."""
RSS_RESOLUTION_MIB = 0.1
"""What the peak-RSS probe cannot resolve: pages touched by small temporaries and Python objects
(B-sized vectors, tensor headers) next to the B x C buffers that the memory target is about."""


def measure_memory(kind: str, impl: str, size: int, class_batch: int) -> dict | None:
    if DEVICE.type == "cuda":  # the CUDA caching allocator counts its own peak: no subprocess needed
        if kind == "pair":
            step, params = pair_step(impl, size), []
        else:
            step, params = class_step(impl, size, class_batch)
        step()
        for p in params:
            p.grad = None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return {"mib": (torch.cuda.max_memory_allocated() - before) / 2**20, "exact": True}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(THREADS))
    cmd = [sys.executable, __file__, "--memory-probe", kind, impl, str(size), str(class_batch)]
    probes = []
    for _ in range(MEMORY_PROBES):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"  [memory probe {kind}/{impl}/{size} failed: {proc.stderr.strip()[-300:]}]")
            return None
        probes.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return min(probes, key=lambda probe: probe["mib"])


# --- report ------------------------------------------------------------------------------------


def fmt_ms(values: list[float] | None) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values) * 1e3:8.2f} [{min(values) * 1e3:7.2f}]"


def ratio(num: list[float] | None, den: list[float] | None) -> float | None:
    if not num or not den:
        return None
    return statistics.median(num) / statistics.median(den)


def min_ratio(num: list[float] | None, den: list[float] | None) -> float | None:
    """The ratio of the fastest repeats: what the code costs when nothing else runs (timeit's rule)."""
    if not num or not den:
        return None
    return min(num) / min(den)


def fmt_ratio(value: float | None) -> str:
    return "   —" if value is None else f"{value:5.2f}"


def fmt_mib(mem: dict | None) -> str:
    if mem is None:
        return "    —"
    return f"{mem['mib']:7.1f}" + ("" if mem["exact"] else "*")


def verdict(value: float | None, limit: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= limit else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--memory-probe", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--amp", choices=list(AMP_DTYPES), default="none", help="autocast dtype")
    args = parser.parse_args()
    global DEVICE, AMP
    DEVICE, AMP = torch.device(args.device), AMP_DTYPES[args.amp]
    if args.memory_probe:
        kind, impl, size, class_batch = args.memory_probe
        print(json.dumps(memory_probe(kind, impl, int(size), int(class_batch))))
        return

    torch.set_num_threads(THREADS)
    cfg = QUICK if args.quick else FULL
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}, autocast {args.amp}, d={DIM}; "
        f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        "times: median [min] over repeats, ms per forward+backward; memory: peak RSS "
        "increase of one forward+backward, smallest of 3 fresh subprocesses, MiB"
    )

    # Pair-wise.
    print(f"\n== pair-wise Circle loss (m=0.25, γ=256), P×K labels with K={K}")
    header = (
        f"{'B':>5} | {'ours':>18} | {'PML':>18} | {'floor':>18} | {'ours/PML':>8} | "
        f"{'ours/floor':>10} | {'MiB ours':>8} | {'MiB PML':>8} | {'MiB floor':>9}"
    )
    print(header)
    print("-" * len(header))
    pair_rows = []
    for batch in cfg["pair_sizes"]:
        repeats = 5 if args.quick else 31
        steps = {impl: pair_step(impl, batch) for impl in PAIR_IMPLS}
        times = time_interleaved(steps, warmup=2, repeats=repeats)
        del steps
        mem = {impl: None if args.no_memory else measure_memory("pair", impl, batch, 0) for impl in PAIR_IMPLS}
        r_pml, r_floor = ratio(times["ours"], times["pml"]), ratio(times["ours"], times["floor"])
        min_ratios = (
            min_ratio(times["ours"], times["pml"]),
            min_ratio(times["ours"], times["floor"]),
        )
        pair_rows.append((batch, r_pml, r_floor, min_ratios))
        print(
            f"{batch:>5} | {fmt_ms(times['ours'])} | {fmt_ms(times['pml'])} | "
            f"{fmt_ms(times['floor'])} | {fmt_ratio(r_pml):>8} | {fmt_ratio(r_floor):>10} | "
            f"{fmt_mib(mem['ours']):>8} | {fmt_mib(mem['pml']):>8} | {fmt_mib(mem['floor']):>9}"
        )

    # Class-level.
    batch = cfg["class_batch"]
    impls = CLASS_IMPLS
    print(f"\n== class-level heads, B={batch}: Circle (m=0.25, γ=256), AM-Softmax (m=0.35, γ=64)")
    header = (
        f"{'C':>6} | {'circle':>18} | {'am_softmax':>18} | {'PML CosFace':>18} | "
        f"{'floor':>18} | {'circ/am':>7} | {'circ/PML':>8} | {'circ/floor':>10} | "
        f"{'MiB circ':>8} | {'MiB am':>7} | {'MiB PML':>8} | {'MiB floor':>9}"
    )
    print(header)
    print("-" * len(header))
    class_rows = []
    for num_classes in cfg["class_sizes"]:
        repeats = (3 if args.quick else 9) if num_classes <= 10000 else (3 if args.quick else 5)
        steps = {impl: class_step(impl, num_classes, batch)[0] for impl in impls}
        times = time_interleaved(steps, warmup=1, repeats=repeats)
        del steps
        gc.collect()
        mem = {impl: None if args.no_memory else measure_memory("class", impl, num_classes, batch) for impl in impls}
        r_am = ratio(times["circle"], times.get("am_softmax"))
        r_pml = ratio(times["circle"], times["pml_cosface"])
        r_floor = ratio(times["circle"], times["floor"])
        class_rows.append((num_classes, r_am, r_pml, mem, min_ratio(times["circle"], times.get("am_softmax")),
                           min_ratio(times["circle"], times["pml_cosface"])))  # fmt: skip
        print(
            f"{num_classes:>6} | {fmt_ms(times['circle'])} | {fmt_ms(times.get('am_softmax'))} | "
            f"{fmt_ms(times['pml_cosface'])} | {fmt_ms(times['floor'])} | {fmt_ratio(r_am):>7} | "
            f"{fmt_ratio(r_pml):>8} | {fmt_ratio(r_floor):>10} | {fmt_mib(mem['circle']):>8} | "
            f"{fmt_mib(mem.get('am_softmax')):>7} | {fmt_mib(mem['pml_cosface']):>8} | "
            f"{fmt_mib(mem['floor']):>9}"
        )
    if any(m is not None and not m["exact"] for row in class_rows for m in row[3].values()):
        print("  * clear_refs not writable: ru_maxrss − RSS before the step (upper bound)")

    # Targets.
    print("\n== targets")
    print("(verdicts on ratios of minima, timeit's rule on a shared machine: other processes only ever add time;")
    print(" ratios of medians in brackets)")
    for batch, r_pml, r_floor, (m_pml, m_floor) in pair_rows:
        if batch >= 256:
            print(
                f"pair-wise B={batch}: ours/PML {fmt_ratio(m_pml).strip()} [{fmt_ratio(r_pml).strip()}] ≤ 0.35 "
                f"{verdict(m_pml, 0.35)}; ours/floor {fmt_ratio(m_floor).strip()} "
                f"[{fmt_ratio(r_floor).strip()}] ≤ 1.5 {verdict(m_floor, 1.5)}"
            )
    for num_classes, r_am, r_pml, mem, m_am, m_pml in class_rows:
        line = (
            f"class-level C={num_classes}: circle/our CosFace {fmt_ratio(m_am).strip()} [{fmt_ratio(r_am).strip()}] "
            f"≤ 1.1 {verdict(m_am, 1.1)}; circle/PML CosFace {fmt_ratio(m_pml).strip()} "
            f"[{fmt_ratio(r_pml).strip()}] ≤ 1.0 {verdict(m_pml, 1.0)}"
        )
        if num_classes == 85742 and mem["circle"] is not None:
            for ref in ("am_softmax", "pml_cosface"):
                if mem.get(ref) is not None:
                    ok = mem["circle"]["mib"] <= mem[ref]["mib"] + RSS_RESOLUTION_MIB
                    line += (
                        f"; peak MiB circle {mem['circle']['mib']:.2f} ≤ {ref} {mem[ref]['mib']:.2f} "
                        f"(+ {RSS_RESOLUTION_MIB} RSS resolution) {'met' if ok else 'MISSED'}"
                    )
        print(line)
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
