"""Decoding prepared images through ``ManifestDataset`` + a torch ``DataLoader``, against a plain PIL loop;
random reads from a pack against loose files.

    python benchmarks/data_decode.py            # 512 images per size, 5 repeats (about two minutes)
    python benchmarks/data_decode.py --quick    # 128 images per size, 3 repeats
    python benchmarks/data_decode.py --batch 128   # the batch of a face training run on one GPU (default 32)

Three prepared data sets are made on the fly in a temporary folder, through the real preparation path
(:func:`circle_repro.data.prepared.write_prepared`: decode-checked, stored as they are, manifest
last), from synthetic JPEGs (quality 95, smooth colour fields plus noise, so they compress like
photographs rather than like noise or flat colour):

* ``112x112``: aligned face crops (the face sets), read with the ``face`` test transform;
* ``256x128``: person crops, height x width (the re-ID sets), read with the ``reid`` test transform;
* ``~500x375``: photographs of the retrieval sets' size (500x375, 375x500, 500x333, 480x360 in turn),
  read with the ``retrieval`` test transform (resize 256, centre crop 227).

Loaders: ``ManifestDataset(split="test", train=False)`` in a ``DataLoader`` (batch 32 or ``--batch``, in file order)
with 0, 1 and 2 worker processes; the workers are persistent and warmed up first, so the figures are
steady-state throughput, without process start-up. The loaders yield what training and evaluation
get from them: uint8 batches, whose float conversion and normalisation run on the model's device
(``engine/batch_transfer.py``); one more row, ``0 workers + normalising on this CPU``, adds that step
here, for what a CPU-only run pays. Baseline, in the same process: a plain loop of
``PIL.Image.open(path).convert("RGB")`` and torchvision's ``to_tensor`` over the same files (decode and
conversion only: no resize, no normalisation, no batching). The main process runs with one torch
thread (DataLoader workers do too), so 0 workers and the baseline use one core and 1 or 2 workers add
processes. After one warm-up pass of each, every repeat times each loader once, in turn (interleaved,
so that load from other processes hits all of them alike); the table gives images/s as the median
over repeats, with the minimum in brackets, and the ratio of the medians to the baseline (> 1: faster
than the plain loop). Beside it, images per CPU-second (user + system time of the process and of the
loader's worker processes, from /proc), which other processes on the machine do not change: the
loader's cost per core whatever the load. Targets, with a verdict printed for each size: 0 workers
>= 0.9 x the baseline (wall clock, and per CPU-second), 2 workers >= 1.6 x (wall clock: it scales with
workers, which needs two idle cores).

Pack against loose files: the same images prepared twice, as loose files and as one pack
(``images.rec``), read back as encoded bytes through ``ImageReader`` in one random order (the access
pattern of a shuffled epoch), from the page cache; the pack is read through a descriptor kept open,
a loose file is opened, read and closed. Target: the pack at least as fast (ratio >= 1).

Timings are wall-clock on whatever machine runs this; compare ratios, not absolutes. Other processes
slow every loader alike, but 1 and 2 workers need idle cores: the load average is printed at the start
and the end.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.functional import to_tensor

try:
    import circle_repro  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from circle_repro.data import image_store
from circle_repro.data.image_reader import ImageReader
from circle_repro.data.manifest import read_manifest
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.prepared import Sample, write_prepared
from circle_repro.engine.batch_transfer import NetworkInput

DEFAULT_BATCH = 32
WORKERS = (0, 1, 2)
JPEG_QUALITY = 95
# name -> (transform style, (width, height) of each image in turn)
SIZES = {
    "112x112": ("face", [(112, 112)]),
    "256x128": ("reid", [(128, 256)]),
    "~500x375": ("retrieval", [(500, 375), (375, 500), (500, 333), (480, 360)]),
}
FULL = dict(images=512, repeats=5)
QUICK = dict(images=128, repeats=3)
TARGETS = {0: 0.9, 2: 1.6}  # workers -> ratio to the baseline the loader should reach
PACK_TARGET = 1.0


def _jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A photograph-like JPEG: a smooth random colour field (upsampled 8 x 6 grid) plus mild noise."""
    grid = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8))
    coarse = grid.resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_prepared(
    root: Path, name: str, sizes: list[tuple[int, int]], n: int, seed: int, *, pack: bool = False
) -> Path:
    """A prepared data set of ``n`` synthetic JPEGs (10 classes, all ``test``) under ``root/<name>``, as loose
    files or (``pack``) in one pack."""
    rng = np.random.default_rng(seed)
    raw = root / "raw" / name
    raw.mkdir(parents=True)
    samples = []
    for i in range(n):
        file = raw / f"{i:05d}.jpg"
        file.write_bytes(_jpeg(rng, *sizes[i % len(sizes)]))
        samples.append(Sample(file, f"{i % 10}/{i:05d}.jpg", i % 10, "test", f"synthetic image {i}"))
    out = root / "prepared" / name
    threshold = image_store.PACK_THRESHOLD
    image_store.PACK_THRESHOLD = 0 if pack else n
    try:
        write_prepared(samples, out)
    finally:
        image_store.PACK_THRESHOLD = threshold
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def _worker_cpu_seconds(loader: DataLoader) -> float:
    """CPU seconds (user + system) used so far by a persistent loader's worker processes (Linux /proc)."""
    iterator = getattr(loader, "_iterator", None)
    total = 0
    for worker in getattr(iterator, "_workers", []):
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def _loader_pass(loader: DataLoader, network_input: NetworkInput | None = None) -> int:
    count = 0
    for batch in loader:
        if network_input is not None:
            network_input(batch["inputs"])
        count += len(batch["labels"])
    return count


def _baseline_pass(paths: list[Path]) -> int:
    for path in paths:
        with Image.open(path) as image:
            to_tensor(image.convert("RGB"))
    return len(paths)


def _read_pass(reader: ImageReader, order: np.ndarray) -> int:
    for index in order:
        reader.read(int(index))
    return len(order)


def _verdict(ratio: float, target: float) -> str:
    return f"{'meets' if ratio >= target else 'MISSES'} >= {target:.1f}"


def pack_vs_loose(root: Path, images: int, repeats: int) -> None:
    """Random reads of the same images from loose files and from a pack."""
    name, (_, sizes) = "~500x375", SIZES["~500x375"]
    folders = {
        kind: make_prepared(root / kind, name, sizes, images, seed=7, pack=kind == "pack") for kind in ("loose", "pack")
    }
    readers = {kind: ImageReader(folder, read_manifest(folder)["path"]) for kind, folder in folders.items()}
    order = np.random.default_rng(0).permutation(images)
    rates: dict[str, list[float]] = {kind: [] for kind in readers}
    for reader in readers.values():
        _read_pass(reader, order)  # warm-up: page cache, descriptors
    for _ in range(repeats * 4):
        for kind, reader in readers.items():
            start = time.perf_counter()
            _read_pass(reader, order)
            rates[kind].append(images / (time.perf_counter() - start))
    loose, pack = (statistics.median(rates[kind]) for kind in ("loose", "pack"))
    print(f"\n== random reads of encoded images ({name} JPEG, {images} images, {repeats * 4} repeats)")
    print(f"{'source':<38} | {'reads/s median [min]':>23} | ratio")
    print("-" * 72)
    for kind, label in (("loose", "loose files (open, read, close)"), ("pack", "pack (pread on an open descriptor)")):
        median = statistics.median(rates[kind])
        print(f"{label:<38} | {median:>10.0f} [{min(rates[kind]):>9.0f}] | {median / loose:5.2f}")
    print(f"verdict: pack / loose {pack / loose:.2f}: {_verdict(pack / loose, PACK_TARGET)}")


def run(images: int, repeats: int, batch: int = DEFAULT_BATCH) -> None:
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, Pillow {PIL.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"images/s: median [min] over {repeats} repeats, after one warm-up pass; batch {batch}; "
        "ratio: median / baseline median"
    )
    with tempfile.TemporaryDirectory(prefix="data-decode-") as tmp:
        for index, (name, (style, sizes)) in enumerate(SIZES.items()):
            prepared = make_prepared(Path(tmp), name, sizes, images, seed=index)
            dataset = ManifestDataset(prepared, split="test", transform=style, train=False)
            paths = [prepared / p for p in dataset.frame["path"]]
            mean_kib = sum(p.stat().st_size for p in paths) / len(paths) / 1024
            passes: dict[str, Callable[[], int]] = {
                "baseline: PIL open+convert+to_tensor": lambda paths=paths: _baseline_pass(paths)
            }
            loaders = []
            for workers in WORKERS:
                loader = DataLoader(
                    dataset, batch_size=batch, shuffle=False, num_workers=workers, persistent_workers=workers > 0
                )
                loaders.append(loader)
                passes[f"ManifestDataset, {workers} workers"] = lambda loader=loader: _loader_pass(loader)
            network_input = NetworkInput.of(dataset.pipeline)
            passes["0 workers + normalising on this CPU"] = lambda loader=loaders[0], network=network_input: (
                _loader_pass(loader, network)
            )
            for step in passes.values():  # warm-up: page cache, worker start-up, first-call costs
                assert step() == len(paths)
            rates: dict[str, list[float]] = {label: [] for label in passes}
            cpu_rates: dict[str, list[float]] = {label: [] for label in passes}
            owners = [None, *loaders, None]  # whose workers each pass uses (none for the baseline)
            for _ in range(repeats):
                for (label, step), owner in zip(passes.items(), owners, strict=True):
                    workers_before = _worker_cpu_seconds(owner) if owner is not None else 0.0
                    cpu_start, start = time.process_time(), time.perf_counter()
                    step()
                    wall = time.perf_counter() - start
                    cpu = time.process_time() - cpu_start
                    cpu += (_worker_cpu_seconds(owner) - workers_before) if owner is not None else 0.0
                    rates[label].append(len(paths) / wall)
                    cpu_rates[label].append(len(paths) / max(cpu, 1e-9))
            del loaders, owners, passes  # shuts the persistent workers down
            baseline = statistics.median(rates[next(iter(rates))])
            cpu_baseline = statistics.median(cpu_rates[next(iter(cpu_rates))])
            print(f"\n== {name} JPEG ({style} test transform), {len(paths)} images, mean {mean_kib:.1f} KiB")
            print(f"{'loader':<38} | {'images/s median [min]':>23} | ratio | images/CPU-s | ratio")
            print("-" * 96)
            for label, values in rates.items():
                median, cpu_median = statistics.median(values), statistics.median(cpu_rates[label])
                print(
                    f"{label:<38} | {median:>10.0f} [{min(values):>9.0f}] | {median / baseline:5.2f} | "
                    f"{cpu_median:>12.0f} | {cpu_median / cpu_baseline:5.2f}"
                )
            verdicts = []
            for workers, target in TARGETS.items():
                ratio = statistics.median(rates[f"ManifestDataset, {workers} workers"]) / baseline
                verdicts.append(f"{workers} workers {ratio:.2f} {_verdict(ratio, target)}")
            cpu_ratio = statistics.median(cpu_rates["ManifestDataset, 0 workers"]) / cpu_baseline
            print("verdict (wall clock): " + "; ".join(verdicts))
            print(f"verdict (CPU time, 0 workers): {cpu_ratio:.2f} {_verdict(cpu_ratio, TARGETS[0])}")
        pack_vs_loose(Path(tmp) / "pack_vs_loose", images, repeats)
    print(f"\nload average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per loader batch (default: 32)")
    args = parser.parse_args()
    run(**(QUICK if args.quick else FULL), batch=args.batch)


if __name__ == "__main__":
    main()
