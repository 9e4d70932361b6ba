"""Preparing an insightface training pack (MS1MV2 layout): indexing the ``.rec`` into a manifest.

    python benchmarks/pack_prepare.py                  # a pack of 50,000 images
    python benchmarks/pack_prepare.py --images 10000

Builds a synthetic ``faces_emore`` folder (``train.rec``/``train.idx``/``property`` in insightface's
layout: header record 0, images grouped by identity, identity records) of 112x112 JPEGs (quality 95,
photograph-like, about 6 KiB, as MS1MV2's), prepares it with ``MS1MV2.prepare_raw`` (link the pack,
read every record once to check framing, class and image header, write the manifest and its content
hash), and prints the time, images/s, the files the prepared folder holds, and the time the same rate
gives for MS1MV2's 5,822,653 images. Wall-clock on whatever machine runs this, one process.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import circle_repro  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from circle_repro.data.datasets.ms1m import MS1MV2
from circle_repro.data.formats.recordio import IRHeader, RecordIOWriter, write_property

MS1MV2_IMAGES = 5_822_653
IMAGES_PER_CLASS = 70  # MS1MV2: 5.8 M images of 85,742 identities
DISTINCT_JPEGS = 256  # the pack repeats these; only their size matters here


def _jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
            (112, 112), Image.Resampling.BICUBIC
        )
        noisy = np.clip(np.asarray(coarse, dtype=np.int16) + rng.normal(0, 6, (112, 112, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="JPEG", quality=95)
        out.append(buffer.getvalue())
    return out


def build_pack(folder: Path, images: int) -> None:
    """An insightface training pack of ``images`` images, ``IMAGES_PER_CLASS`` per identity."""
    folder.mkdir(parents=True)
    jpegs = _jpegs(DISTINCT_JPEGS)
    classes = -(-images // IMAGES_PER_CLASS)
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as writer:
        writer.write_record(0, IRHeader(2, [images + 1, images + 1 + classes], 0, 0))
        for key in range(1, images + 1):
            writer.write_record(key, IRHeader(0, float((key - 1) // IMAGES_PER_CLASS), key, 0), jpegs[key % len(jpegs)])
        for c in range(classes):
            first = 1 + c * IMAGES_PER_CLASS
            writer.write_record(images + 1 + c, IRHeader(2, [first, min(first + IMAGES_PER_CLASS, images + 1)], 0, 0))
    write_property(folder / "property", classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="pack-prepare-") as tmp:
        raw = Path(tmp) / "raw"
        build_pack(raw / "faces_emore", args.images)
        size_mib = (raw / "faces_emore" / "train.rec").stat().st_size / 2**20
        out = Path(tmp) / "prepared"
        start = time.perf_counter()
        MS1MV2.prepare_raw(raw, out)
        seconds = time.perf_counter() - start
        files = sorted(p.name for p in out.iterdir())
    rate = args.images / seconds
    print(f"pack: {args.images} images, {size_mib:.0f} MiB; prepared in {seconds:.1f} s = {rate:.0f} images/s")
    print(f"prepared folder holds {len(files)} files: {', '.join(files)}")
    print(f"MS1MV2 ({MS1MV2_IMAGES} images) at this rate: {MS1MV2_IMAGES / rate / 60:.0f} min")
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
