"""CUB-200-2011 (``CUB_200_2011.tgz``), Cars196 packaging A (``car_ims.tgz`` + ``cars_annos.mat``) and Stanford
Online Products (``Stanford_Online_Products.zip``) in their real layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from circle_repro.data.sources import Source
from circle_repro.rehearsal.archives import pack_tgz, pack_zip
from circle_repro.rehearsal.images import encode_image
from circle_repro.rehearsal.scale import Scale, spread

CUB_ROOT = "CUB_200_2011"
SOP_ROOT = "Stanford_Online_Products"
SOP_HEADER = "image_id class_id super_class_id path"
SOP_SUPER_CLASSES = (
    "bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle",
    "lamp", "mug", "sofa", "stapler", "table", "toaster",
)  # fmt: skip
CARS_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")


def _split_classes(source: Source, scale: Scale) -> dict[str, tuple[int, list[int]]]:
    """Per split: its first class id at full scale and the image count of each of its scaled classes."""
    counts = source.expected_counts
    splits = {}
    first = {"train": 1, "test": counts["train_classes"] + 1}
    for split in ("train", "test"):
        classes = scale.classes(counts[f"{split}_classes"])
        splits[split] = (first[split], spread(scale.images(counts[f"{split}_images"], classes), classes))
    return splits


def cub_members(source: Source, scale: Scale, image_size: tuple[int, int]) -> dict[str, bytes]:
    """The ``CUB_200_2011.tgz`` members: top-level ``attributes.txt`` and ``CUB_200_2011/`` with images and lists."""
    members = {"attributes.txt": b"1 has_bill_shape::curved_(up_or_down)\n2 has_bill_shape::dagger\n"}
    images, labels, split_lines, boxes, classes = [], [], [], [], []
    image_id = 0
    height, width = image_size
    for first, per_class in _split_classes(source, scale).values():
        for offset, count in enumerate(per_class):
            class_id = first + offset
            folder = f"{class_id:03d}.Synthetic_Bird_{class_id}"
            classes.append(f"{class_id} {folder}")
            for k in range(count):
                image_id += 1
                name = f"{folder}/Synthetic_Bird_{class_id}_{k + 1:04d}_{100000 + image_id}.jpg"
                members[f"{CUB_ROOT}/images/{name}"] = encode_image(image_id, height, width)
                images.append(f"{image_id} {name}")
                labels.append(f"{image_id} {class_id}")
                split_lines.append(f"{image_id} {k % 2}")
                boxes.append(f"{image_id} 10.0 12.0 {width - 20}.0 {height - 20}.0")
    lists = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split_lines,
        "classes.txt": classes,
        "bounding_boxes.txt": boxes,
    }
    members[f"{CUB_ROOT}/README"] = b"The Caltech-UCSD Birds-200-2011 Dataset (synthetic rehearsal copy)\n"
    for name, lines in lists.items():
        members[f"{CUB_ROOT}/{name}"] = ("\n".join(lines) + "\n").encode()
    return members


def write_cub200(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/CUB_200_2011.tgz``; the number of images."""
    members = cub_members(source, scale, source.image_size or (375, 500))
    pack_tgz(raw_dir / "CUB_200_2011.tgz", members)
    return sum(1 for name in members if name.endswith(".jpg"))


def write_cars_annos(
    path: Path, rows: Sequence[dict], class_names: Sequence[str], fields: Sequence[str] = CARS_FIELDS
) -> Path:
    """``cars_annos.mat`` in the real layout: ``annotations`` a 1 x N struct of ``fields`` (numbers as 1 x 1
    uint16 arrays), ``class_names`` a 1 x C cell of strings."""
    from scipy.io import savemat

    annotations = np.empty((1, len(rows)), dtype=[(name, "O") for name in fields])
    for i, row in enumerate(rows):
        for name in fields:
            value = row[name]
            annotations[name][0, i] = value if name == "relative_im_path" else np.array([[value]], dtype=np.uint16)
    names = np.empty((1, len(class_names)), dtype=object)
    for i, name in enumerate(class_names):
        names[0, i] = name
    savemat(path, {"annotations": annotations, "class_names": names})
    return path


def write_cars196(raw_dir: Path, source: Source, scale: Scale) -> int:
    """Packaging A: ``raw_dir/car_ims.tgz`` (``car_ims/NNNNNN.jpg``) and ``raw_dir/cars_annos.mat``; the number of images."""
    height, width = source.image_size or (375, 500)
    rows, members = [], {}
    for first, per_class in _split_classes(source, scale).values():
        for offset, count in enumerate(per_class):
            for k in range(count):
                index = len(rows) + 1
                path = f"car_ims/{index:06d}.jpg"
                members[path] = encode_image(20000 + index, height, width)
                rows.append({"relative_im_path": path, "bbox_x1": 10, "bbox_y1": 12, "bbox_x2": width - 10,
                             "bbox_y2": height - 12, "class": first + offset, "test": k % 2})  # fmt: skip
    class_names = [f"Synthetic Car Model {i} 2012" for i in range(1, source.expected_counts["classes"] + 1)]
    raw_dir.mkdir(parents=True, exist_ok=True)
    write_cars_annos(raw_dir / "cars_annos.mat", rows, class_names)
    pack_tgz(raw_dir / "car_ims.tgz", members)
    return len(rows)


def sop_members(source: Source, scale: Scale, image_size: tuple[int, int]) -> dict[str, bytes]:
    """The ``Stanford_Online_Products.zip`` members: ``Ebay_{train,test,info}.txt`` and ``<super>_final/*.JPG``."""
    height, width = image_size
    members: dict[str, bytes] = {}
    lists: dict[str, list[str]] = {"train": [SOP_HEADER], "test": [SOP_HEADER]}
    image_id = 0
    for split, (first, per_class) in _split_classes(source, scale).items():
        for offset, count in enumerate(per_class):
            class_id = first + offset
            super_id = class_id % len(SOP_SUPER_CLASSES) + 1
            folder = f"{SOP_SUPER_CLASSES[super_id - 1]}_final"
            for n in range(count):
                image_id += 1
                path = f"{folder}/{110000000000 + class_id}_{n}.JPG"
                members[f"{SOP_ROOT}/{path}"] = encode_image(40000 + image_id, height, width)
                lists[split].append(f"{image_id} {class_id} {super_id} {path}")
    info = lists["train"] + lists["test"][1:]
    for name, lines in (("Ebay_train.txt", lists["train"]), ("Ebay_test.txt", lists["test"]), ("Ebay_info.txt", info)):
        members[f"{SOP_ROOT}/{name}"] = ("\n".join(lines) + "\n").encode()
    return members


def write_sop(raw_dir: Path, source: Source, scale: Scale) -> int:
    """``raw_dir/Stanford_Online_Products.zip``; the number of images."""
    members = sop_members(source, scale, source.image_size or (375, 500))
    pack_zip(raw_dir / "Stanford_Online_Products.zip", members)
    return sum(1 for name in members if name.endswith(".JPG"))


__all__ = ["cub_members", "sop_members", "write_cars196", "write_cars_annos", "write_cub200", "write_sop"]
