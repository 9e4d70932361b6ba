"""MSMT17 (Wei et al. 2018): 4,101 pedestrians, 15 cameras; the paper's Table 4 large re-ID set.

Raw (torchreid/fast-reid ``msmt17.py``): obtained from the authors on request and
placed by hand under ``data/raw/msmt17/`` as ``MSMT17_V1.zip`` / ``MSMT17_V2.zip`` or as the
extracted folder ``MSMT17_V1/`` / ``MSMT17_V2/``. V1 keeps images in ``train/`` and ``test/``, V2
(same split, faces blurred) in ``mask_train_v2/`` and ``mask_test_v2/``; both carry
``list_train.txt``, ``list_val.txt`` (paths under the train folder) and ``list_query.txt``,
``list_gallery.txt`` (paths under the test folder), one ``<pid4>/<image>.jpg <pid>`` per line.

Split: train = ``list_train`` + ``list_val`` (the data set's 32,621 training images of 1,041 ids;
``include_val=False`` gives torchreid/fast-reid's default of ``list_train`` alone); test = query
(11,659) + gallery (82,161) of 3,060 ids. Labels are the list's pids as they are: test pids restart
at 0, so train and test labels overlap in value but never name the same person (splits are never
pooled). ``camera`` is the ``CC`` field of ``PPPP_NNN_CC_...jpg`` (1..15; torchreid subtracts 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd

from circle_repro.data.acquire import first_present, obtain_declared
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.manifest import REID_COLUMNS
from circle_repro.data.prepared import Sample, raw_tree, write_prepared
from circle_repro.data.sources import load_sources

SOURCE = load_sources()["msmt17"]  # accepted archives/folders and instructions: data/sources.yaml
# version folder -> (train image folder, test image folder); torchreid's order: V1 is used when both are present
VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
# list file -> (image folder: 0 train / 1 test, split, role)
LISTS = {
    "list_train.txt": (0, "train", None),
    "list_val.txt": (0, "train", None),
    "list_query.txt": (1, "test", "query"),
    "list_gallery.txt": (1, "test", "gallery"),
}
CAMERAS = range(1, 16)
LINE_FORMAT = "'<pid4>/<PPPP_NNN_CC_...>.jpg <pid>'"


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """The MSMT17 archives/folders present in ``raw_dir`` (archives copied from ``mirror`` if given).

    FileNotFoundError says what to request and where to put it. No checksum is published.
    """
    return obtain_declared(SOURCE, raw_dir, mirrors=(mirror,))


def _parse_line(where: str, line: str) -> tuple[str, int, int]:
    """(relative image path, pid, camera) of one list line; ValueError naming ``where`` otherwise."""
    fields = line.split()
    if len(fields) != 2:
        raise ValueError(f"{where}: expected {LINE_FORMAT}, got {line!r}")
    relative, pid_text = fields
    if not pid_text.isdigit():
        raise ValueError(f"{where}: pid {pid_text!r} is not a non-negative integer ({LINE_FORMAT})")
    pid = int(pid_text)
    parts = PurePosixPath(relative).parts
    if len(parts) != 2 or relative.startswith("/") or not parts[1].lower().endswith(".jpg"):
        raise ValueError(f"{where}: image path {relative!r} is not '<pid4>/<image>.jpg'")
    name_fields = parts[1].split("_")
    if not parts[0].isdigit() or int(parts[0]) != pid or not name_fields[0].isdigit() or int(name_fields[0]) != pid:
        raise ValueError(f"{where}: folder and file name of {relative!r} do not start with the line's pid {pid}")
    if len(name_fields) < 3 or not name_fields[2].isdigit() or int(name_fields[2]) not in CAMERAS:
        raise ValueError(f"{where}: no camera 01..15 in the third field of {parts[1]!r} (PPPP_NNN_CC_...jpg)")
    return relative, pid, int(name_fields[2])


def parse_lists(texts: Mapping[str, str], version: str, include_val: bool = True) -> pd.DataFrame:
    """Manifest rows from the four list files' texts; column ``source`` names each row's list line.

    ``path`` is ``<image folder of the version>/<list path>``. Duplicate images raise ValueError.
    """
    folders = VERSIONS[version]
    rows = []
    for list_name, (folder, split, role) in LISTS.items():
        if list_name == "list_val.txt" and not include_val:
            continue
        for number, line in enumerate(texts[list_name].splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{version}/{list_name}:{number}"
            relative, pid, camera = _parse_line(where, line)
            rows.append(
                {
                    "path": f"{folders[folder]}/{relative}",
                    "label": pid,
                    "split": split,
                    "camera": camera,
                    "role": role,
                    "source": where,
                }
            )
    frame = pd.DataFrame(rows, columns=[*REID_COLUMNS, "source"])
    duplicated = frame[frame["path"].duplicated(keep=False)]
    if not duplicated.empty:
        first = duplicated.groupby("path")["source"].apply(list).iloc[0]
        raise ValueError(
            f"{version}: image {duplicated['path'].iloc[0]!r} listed twice ({', '.join(first)}); "
            "the lists must be disjoint"
        )
    return frame


def _find_root(tree: Path, version: str) -> Path:
    """The folder holding the lists and image folders: ``tree/<version>/`` or ``tree`` itself."""
    for root in (tree / version, tree):
        if (root / "list_train.txt").is_file():
            missing = [name for name in (*LISTS, *VERSIONS[version]) if not (root / name).exists()]
            if missing:
                raise FileNotFoundError(
                    f"{root}: missing {', '.join(missing)}; an {version} folder holds "
                    f"{', '.join(LISTS)} and the folders {'/, '.join(VERSIONS[version])}/"
                )
            return root
    raise FileNotFoundError(
        f"{tree}: no {version}/list_train.txt; expected the {version} layout "
        f"({', '.join(LISTS)}, {'/, '.join(VERSIONS[version])}/)"
    )


def _choose_input(raw_dir: Path, version: str | None) -> tuple[str, Path]:
    """(version, raw folder or archive) to prepare: an extracted folder before the archive, V1 before V2."""
    if version is not None and version not in VERSIONS:
        raise ValueError(f"version must be one of {list(VERSIONS)} or None, got {version!r}")
    candidates = [version] if version else list(VERSIONS)
    names = [name for candidate in candidates for name in (f"{candidate}/", f"{candidate}.zip")]
    name, path = first_present(SOURCE, raw_dir, names)
    return name.removesuffix("/").removesuffix(".zip"), path


def prepare_raw(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    resize_short_side: int | None = None,
    version: str | None = None,
    include_val: bool = True,
) -> Path:
    """Read the lists, store the train/query/gallery images and write the manifest; return its path.

    ``version`` picks ``MSMT17_V1`` or ``MSMT17_V2`` (default: the first present, V1 first);
    ``include_val`` adds ``list_val`` to the train split; ``resize_short_side`` rescales images.
    """
    version, source = _choose_input(Path(raw_dir), version)
    with raw_tree(source, out_dir) as tree:
        root = _find_root(tree, version)
        texts = {name: (root / name).read_text(encoding="utf-8") for name in LISTS}
        rows = parse_lists(texts, version, include_val)
        samples = [
            Sample(
                root / row.path, row.path, row.label, row.split, row.source, {"camera": row.camera, "role": row.role}
            )
            for row in rows.itertuples(index=False)
        ]
        for sample in samples:
            if not sample.file.is_file():
                raise FileNotFoundError(
                    f"{sample.listed_in}: image {sample.file} not found; the list and the image folders disagree"
                )
        return write_prepared(samples, out_dir, resize_short_side)


def prepare(
    out_dir: str | Path,
    raw_dir: str | Path,
    mirror: str | Path | None = None,
    *,
    resize_short_side: int | None = None,
    version: str | None = None,
    include_val: bool = True,
) -> Path:
    """Check the raw inputs (``fetch_raw``), then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side, version=version, include_val=include_val)


ENTRY = DatasetEntry(name="msmt17", prepare=prepare, fetch=fetch_raw, transform="reid", in_channels=3)
