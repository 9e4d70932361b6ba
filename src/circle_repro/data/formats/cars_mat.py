"""The Cars196 annotation files, MATLAB v5 files read with ``scipy.io.loadmat``.

Packaging A, ``cars_annos.mat``: ``annotations`` is a 1 x N struct array with the fields
``relative_im_path`` (e.g. ``'car_ims/000001.jpg'``), ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2``,
``class`` (1..196) and ``test`` (the classification split, 0/1); ``class_names`` is a 1 x 196 cell of
strings (lenscloth/RKD ``dataset/cars196.py``, KevinMusgrave/powerful-benchmarker ``datasets/cars196.py``).

Packaging B, the classification devkit: ``devkit/cars_meta.mat`` holds ``class_names``;
``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` hold an ``annotations`` struct
array with the fields :data:`DEVKIT_FIELDS` (``fname`` relative to ``cars_train/`` or ``cars_test/``).
The unlabelled ``cars_test_annos.mat`` lacks ``class`` and is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from circle_repro.data.annotations import AnnotationError

ANNOTATION_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
DEVKIT_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


class CarsMatError(AnnotationError):
    """A Cars196 ``.mat`` file that is unreadable or lacks the expected variables or fields."""


@dataclass(frozen=True)
class CarsRecord:
    """One annotated image; ``class_id`` is 1-based as in the file."""

    relative_im_path: str
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2
    class_id: int
    class_name: str
    test: bool


def _scalar(path: Path, index: int, field: str, value: Any) -> Any:
    flat = np.asarray(value).ravel()
    if flat.size != 1:
        raise CarsMatError(f"{path}: annotations[{index}].{field} holds {flat.size} values, expected one")
    item = flat[0]
    return item.item() if isinstance(item, np.generic) else item


def _string(path: Path, where: str, value: Any) -> str:
    item = np.asarray(value).ravel()
    if item.size == 1 and isinstance(item[0], str | np.str_):
        return str(item[0])
    if item.size == 0:
        return ""
    raise CarsMatError(f"{path}: {where} is not a string: {value!r}")


def _loadmat(path: Path, display: str, **options: Any) -> dict[str, Any]:
    """The variables of a MATLAB v5 file; CarsMatError naming ``display`` when it cannot be read."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path, **options)
    except NotImplementedError:
        raise CarsMatError(f"{display}: MATLAB v7.3 (HDF5) files are not supported; the original is v5") from None
    except (MatReadError, ValueError, OSError, IndexError, KeyError, TypeError) as err:
        raise CarsMatError(f"{display}: not a readable MATLAB file ({err}); replace it with the original") from None


def read_cars_annos(path: str | os.PathLike[str]) -> list[CarsRecord]:
    """All annotations of ``cars_annos.mat``, in file order, with their class names resolved."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    mat = _loadmat(path, str(path))
    present = sorted(k for k in mat if not k.startswith("__"))
    for variable in ("annotations", "class_names"):
        if variable not in mat:
            raise CarsMatError(
                f"{path}: variable {variable!r} is missing (found {present}); "
                "is this cars_annos.mat (packaging A) rather than a devkit file?"
            )
    annotations = mat["annotations"]
    names = annotations.dtype.names or ()
    missing = [field for field in ANNOTATION_FIELDS if field not in names]
    if missing:
        raise CarsMatError(f"{path}: annotations lack the field(s) {missing} (found {list(names)})")
    class_names = [_string(path, f"class_names[{i}]", v) for i, v in enumerate(np.asarray(mat["class_names"]).ravel())]
    records = []
    for index, entry in enumerate(annotations.ravel()):
        values = {field: entry[field] for field in ANNOTATION_FIELDS}
        relative = _string(path, f"annotations[{index}].relative_im_path", values["relative_im_path"])
        bbox = tuple(int(_scalar(path, index, f, values[f])) for f in ANNOTATION_FIELDS[1:5])
        class_id = int(_scalar(path, index, "class", values["class"]))
        if not 1 <= class_id <= len(class_names):
            raise CarsMatError(
                f"{path}: annotations[{index}] ({relative}) has class {class_id}, outside 1..{len(class_names)}"
            )
        test = int(_scalar(path, index, "test", values["test"]))
        if test not in (0, 1):
            raise CarsMatError(f"{path}: annotations[{index}].test is {test}, expected 0 or 1")
        records.append(CarsRecord(relative, bbox, class_id, class_names[class_id - 1], bool(test)))  # type: ignore[arg-type]
    return records


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """The ``class_names`` cell of ``cars_annos.mat`` (index 0 is class 1)."""
    path = Path(path)
    mat = _loadmat(path, str(path), variable_names=["class_names"])
    if "class_names" not in mat:
        raise CarsMatError(f"{path}: variable 'class_names' is missing")
    return [_string(path, f"class_names[{i}]", v) for i, v in enumerate(np.asarray(mat["class_names"]).ravel())]


def read_devkit_class_count(path: str | os.PathLike[str], display: str) -> int:
    """The number of classes of the devkit's ``cars_meta.mat`` (its ``class_names`` cell)."""
    mat = _loadmat(Path(path), display, squeeze_me=True)
    if "class_names" not in mat:
        raise CarsMatError(f"{display}: the variable 'class_names' is missing; is this the devkit's cars_meta.mat?")
    return np.atleast_1d(mat["class_names"]).size


def read_devkit_annos(path: str | os.PathLike[str], display: str, num_classes: int) -> list[tuple[str, int]]:
    """``(fname, class)`` of each entry of a devkit ``annotations`` struct array, in file order."""
    mat = _loadmat(Path(path), display, squeeze_me=True)
    if "annotations" not in mat:
        raise CarsMatError(
            f"{display}: variable 'annotations' is missing (found {sorted(k for k in mat if not k.startswith('__'))})"
        )
    annotations = np.atleast_1d(mat["annotations"])
    names = annotations.dtype.names or ()
    missing = [name for name in ("class", "fname") if name not in names]
    if missing:
        hint = " (cars_test_annos.mat has no labels: use cars_test_annos_withlabels.mat)" if "class" in missing else ""
        raise CarsMatError(f"{display}: annotations lack the field(s) {missing} (found {list(names)}){hint}")
    rows = []
    for index, entry in enumerate(annotations):
        fname, class_id = np.asarray(entry["fname"]).ravel(), np.asarray(entry["class"]).ravel()
        if fname.size != 1 or class_id.size != 1 or not isinstance(fname[0], str):
            raise CarsMatError(
                f"{display}: annotations[{index}] needs one fname string and one class, "
                f"got fname={entry['fname']!r}, class={entry['class']!r}"
            )
        if not 1 <= int(class_id[0]) <= num_classes:
            raise CarsMatError(
                f"{display}: annotations[{index}] ({fname[0]}) has class {int(class_id[0])}, outside 1..{num_classes}"
            )
        rows.append((str(fname[0]), int(class_id[0])))
    return rows


__all__ = [
    "ANNOTATION_FIELDS",
    "DEVKIT_FIELDS",
    "CarsMatError",
    "CarsRecord",
    "read_cars_annos",
    "read_class_names",
    "read_devkit_annos",
    "read_devkit_class_count",
]
