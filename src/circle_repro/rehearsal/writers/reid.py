"""Market-1501 (``Market-1501-v15.09.15.zip``) and MSMT17 (``MSMT17_V1.zip``) in their real layouts
(the Market-1501 readme; torchreid ``msmt17.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from circle_repro.data.sources import Source
from circle_repro.rehearsal.archives import zip_tree
from circle_repro.rehearsal.images import encode_image
from circle_repro.rehearsal.scale import Scale, spread

MARKET_ROOT = "Market-1501-v15.09.15"
MARKET_CAMERAS = 6
MSMT_ROOT = "MSMT17_V1"
MSMT_CAMERAS = 15
MSMT_TIMES = ("0113morning", "0114noon", "0302afternoon", "0303morning")


def market_name(pid: int, camera: int, sequence: int, frame: int, box: int) -> str:
    """A Market-1501 file name, e.g. ``0002_c1s1_000451_03.jpg`` or ``-1_c1s1_000401_03.jpg``."""
    prefix = "-1" if pid == -1 else f"{pid:04d}"
    return f"{prefix}_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"


def _market_boxes(source: Source, scale: Scale) -> dict[str, list[tuple[int, int]]]:
    """Per folder, the (pid, camera) of each box: train ids; test ids with queries on one camera and gallery
    boxes on every camera (one on the query's); then ``0000`` distractors and ``-1`` junk in the gallery."""
    counts = source.expected_counts
    train_ids = scale.classes(counts["train_identities"])
    test_ids = scale.classes(counts["test_identities"])
    train = [
        (1 + i, 1 + k % MARKET_CAMERAS)
        for i, n in enumerate(spread(scale.images(counts["train_images"], train_ids), train_ids))
        for k in range(n)
    ]
    queries, gallery = [], []
    distractors = scale.count(counts["distractors"])
    junk = scale.count(counts["gallery_images"] - counts["gallery_images_without_junk"])
    true_gallery = counts["gallery_images_without_junk"] - counts["distractors"]
    per_query = spread(scale.images(counts["query_images"], test_ids), test_ids)
    per_gallery = spread(scale.images(true_gallery, test_ids), test_ids)
    for i in range(test_ids):
        pid = train_ids + 1 + i
        queries += [(pid, 1 + (i + k) % MARKET_CAMERAS) for k in range(per_query[i])]
        gallery += [(pid, 1 + (i + k) % MARKET_CAMERAS) for k in range(per_gallery[i])]
    gallery += [(0, 1 + k % MARKET_CAMERAS) for k in range(distractors)]
    gallery += [(-1, 1 + k % MARKET_CAMERAS) for k in range(junk)]
    return {"bounding_box_train": train, "query": queries, "bounding_box_test": gallery}


def write_market_tree(root: Path, source: Source, scale: Scale) -> int:
    """The extracted ``Market-1501-v15.09.15/`` tree under ``root``; the number of images."""
    from scipy.io import savemat

    height, width = source.image_size or (128, 64)
    frame = 0
    for folder, boxes in _market_boxes(source, scale).items():
        (root / folder).mkdir(parents=True)
        for pid, camera in boxes:
            frame += 1
            name = market_name(pid, camera, 1, frame, 1)
            (root / folder / name).write_bytes(encode_image(frame, height, width))
            if folder == "query":
                stem = name.removesuffix(".jpg")
                (root / "gt_query").mkdir(exist_ok=True)
                savemat(root / "gt_query" / f"{stem}_good.mat", {"good_index": np.array([[1]], dtype=np.float64)})
                savemat(root / "gt_query" / f"{stem}_junk.mat", {"junk_index": np.array([[2]], dtype=np.float64)})
    (root / "gt_bbox").mkdir()
    (root / "readme.txt").write_text("Market-1501 (synthetic rehearsal copy)\r\n")
    return frame


def write_market1501(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/Market-1501-v15.09.15.zip``; the number of images."""
    with tempfile.TemporaryDirectory() as scratch:
        images = write_market_tree(Path(scratch) / MARKET_ROOT, source, scale)
        zip_tree(Path(scratch) / MARKET_ROOT, raw_dir / f"{MARKET_ROOT}.zip")
    return images


def _msmt_lists(source: Source, scale: Scale) -> dict[str, list[tuple[int, int]]]:
    """Per list file, the (pid, camera) of each image; test pids restart at 0."""
    counts = source.expected_counts
    train_ids = scale.classes(counts["train_identities"])
    test_ids = scale.classes(counts["test_identities"])
    lists: dict[str, list[tuple[int, int]]] = {"list_train.txt": [], "list_val.txt": []}
    val_share = counts["val_images"] / counts["train_images"]  # list_val's share of the train images
    for pid, n in enumerate(spread(scale.images(counts["train_images"], train_ids), train_ids)):
        val = min(n - scale.min_per_class, round(n * val_share)) if n > scale.min_per_class else 0
        lists["list_train.txt"] += [(pid, 1 + k % MSMT_CAMERAS) for k in range(n - val)]
        lists["list_val.txt"] += [(pid, 1 + (n - val + k) % MSMT_CAMERAS) for k in range(val)]
    for name, key in (("list_query.txt", "query_images"), ("list_gallery.txt", "gallery_images")):
        per_id = spread(scale.images(counts[key], test_ids), test_ids)
        lists[name] = [(pid, 1 + (pid + k) % MSMT_CAMERAS) for pid in range(test_ids) for k in range(per_id[pid])]
    return lists


def write_msmt_tree(root: Path, source: Source, scale: Scale) -> int:
    """The extracted ``MSMT17_V1/`` tree under ``root`` (``train/``, ``test/`` and the four lists); the number of images."""
    height, width = source.image_size or (256, 128)
    running: dict[tuple[str, int], int] = {}
    seed = 0
    for list_name, entries in _msmt_lists(source, scale).items():
        folder = "train" if list_name in ("list_train.txt", "list_val.txt") else "test"
        lines = []
        for pid, camera in entries:
            index = running[(folder, pid)] = running.get((folder, pid), -1) + 1
            seed += 1
            name = f"{pid:04d}_{index:03d}_{camera:02d}_{MSMT_TIMES[seed % 4]}_{seed % 9973:04d}_{seed % 3}.jpg"
            relative = f"{pid:04d}/{name}"
            (root / folder / f"{pid:04d}").mkdir(parents=True, exist_ok=True)
            (root / folder / relative).write_bytes(encode_image(60000 + seed, height, width))
            lines.append(f"{relative} {pid}\n")
        (root / list_name).write_text("".join(lines))
    return seed


def write_msmt17(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/MSMT17_V1.zip``; the number of images."""
    with tempfile.TemporaryDirectory() as scratch:
        images = write_msmt_tree(Path(scratch) / MSMT_ROOT, source, scale)
        zip_tree(Path(scratch) / MSMT_ROOT, raw_dir / f"{MSMT_ROOT}.zip")
    return images


__all__ = ["market_name", "write_market1501", "write_market_tree", "write_msmt17", "write_msmt_tree"]
