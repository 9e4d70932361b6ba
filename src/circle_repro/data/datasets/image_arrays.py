"""Prepare a data set held as in-memory image arrays (MNIST-style) into PNGs and manifest rows."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from circle_repro.data.manifest import manifest_path, write_manifest
from circle_repro.data.pairs import sample_pairs, write_pairs


def class_disjoint_split(train_classes: Sequence[int], test_classes: Sequence[int]) -> dict[int, str]:
    """label -> split for the retrieval protocol's class-disjoint split; refuses overlapping classes."""
    if set(train_classes) & set(test_classes):
        raise ValueError(f"train_classes {list(train_classes)} and test_classes {list(test_classes)} must be disjoint")
    return {c: "train" for c in train_classes} | {c: "test" for c in test_classes}


def write_images(images: np.ndarray, labels: np.ndarray, split_of: dict[int, str], out_dir: str | Path) -> pd.DataFrame:
    """Write ``images/<label>/<index>.png`` for every image whose label has a split; return the manifest rows.

    Images land in a staging folder that replaces ``images/`` only when complete. Write the
    manifest (``write_manifest``) last, so an interrupted run never leaves a manifest pointing
    at missing files.
    """
    out_dir = Path(out_dir)
    staging = out_dir / "images.partial"
    shutil.rmtree(staging, ignore_errors=True)
    rows = []
    width = len(str(len(images) - 1))
    try:
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            split = split_of.get(int(label))
            if split is None:
                continue
            relative = Path("images") / str(int(label)) / f"{index:0{width}d}.png"
            target = staging / relative.relative_to("images")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target)
            rows.append({"path": relative.as_posix(), "label": int(label), "split": split})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest_path(out_dir).unlink(missing_ok=True)  # it must not name the new images
    final = out_dir / "images"
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return pd.DataFrame(rows)


def prepare_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    split_of: dict[int, str],
    out_dir: str | Path,
    verification_pairs: int | None = None,
) -> Path:
    """Write the images, then ``verification_pairs`` matched/mismatched test pairs (seed 0) if asked,
    then the manifest (last); return the manifest path."""
    frame = write_images(images, labels, split_of, out_dir)
    if verification_pairs:
        write_pairs(sample_pairs(frame[frame["split"] == "test"], verification_pairs, seed=0), out_dir)
    return write_manifest(frame, out_dir)
