"""MegaFace Challenge 1: FaceScrub probes against 1M Flickr distractors; the paper's Table 1.

Retired by the University of Washington, which no longer distributes it: bring your own copy of
insightface's MegaFace test pack, whose contents are placed under ``data/raw/megaface/``
(insightface ``recognition/_evaluation_/megaface/gen_megaface.py`` and ``remove_noises.py``)::

    facescrub_images/<identity>/<image>   aligned 112 x 112 FaceScrub probes (Aaron_Eckhart/Aaron_Eckhart_136.png)
    megaface_images/<a>/<b>/<image>       aligned 112 x 112 distractors in MegaFace's FlickrFinal2 folder structure
    facescrub_lst                         one probe path per line, relative to facescrub_images/
    megaface_lst                          one distractor path per line, relative to megaface_images/
    facescrub_noises.txt                  ArcFace's refined probe noise list
    megaface_noises.txt                   ArcFace's refined distractor noise list

Noise lists, read with the rules of ``remove_noises.py``: a line starting with ``#`` is a comment;
otherwise the stripped line is an entry. A FaceScrub entry is an image file name
(``<identity>_<number>.<ext>``) and marks every probe whose file name (last path component) equals
it. A MegaFace entry is ``<a>/<b>/<image>`` (when the line holds tabs, its second tab-separated
field is the entry) and marks the distractor whose last three path components equal it. An entry
of another shape could never match in insightface either, so it is refused as a malformed line.

Prepared manifest (split = test; probes first in ``facescrub_lst`` order, then distractors in
``megaface_lst`` order):

* probes: ``images/facescrub/<identity>/<image>``, ``role`` = query, ``label`` = the identity's index
  in the sorted FaceScrub identity names (``identities.json`` lists the names by label);
* distractors: ``images/megaface/<a>/<b>/<image>``, ``role`` = gallery, ``label`` = ``-(i + 1)`` for the
  i-th distractor: a distinct negative id, so no distractor matches a probe or another distractor.

``noises.parquet`` (beside the manifest): one row per noise-list entry and image it marks, columns
``list`` ("facescrub" / "megaface"), ``entry`` (as in the list) and ``path`` (the manifest path it
marks; null when it marks no prepared image). :func:`noise_flags` turns it into the boolean
``probe_noisy`` / ``distractor_noisy`` inputs of :func:`circle_repro.evaluation.megaface.evaluate`.

An own copy of the original distribution (``FlickrFinal2/<a>/<b>/<img>.jpg`` with ``.jpg.json``
bounding-box/landmark sidecars) is not aligned here: align it to the ArcFace template first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from circle_repro.data.acquire import obtain_declared
from circle_repro.data.datasets.entry import DatasetEntry
from circle_repro.data.manifest import read_side_table, write_manifest, write_side_table
from circle_repro.data.prepared import committed_store
from circle_repro.data.sources import load_sources
from circle_repro.io import write_json

SOURCE = load_sources()["megaface"]  # files, instructions and substitutes: data/sources.yaml
PROBE_LIST, DISTRACTOR_LIST = "facescrub_lst", "megaface_lst"
PROBE_NOISES, DISTRACTOR_NOISES = "facescrub_noises.txt", "megaface_noises.txt"
PROBE_IMAGES, DISTRACTOR_IMAGES = "facescrub_images", "megaface_images"
NOISES_FILENAME = "noises.parquet"
IDENTITIES_FILENAME = "identities.json"
NOISE_COLUMNS = ("list", "entry", "path")


@dataclass(frozen=True)
class ListedImage:
    """One line of ``facescrub_lst`` / ``megaface_lst``."""

    where: str  # "<list file>:<line>"
    relative: str  # the line: the image path under the images folder
    key: str  # the last 2 (probe) or 3 (distractor) path components, insightface's identity of the image


def fetch_raw(raw_dir: str | Path, mirror: str | Path | None = None) -> dict[str, Path]:
    """The test pack's lists, noise lists and image folders in ``raw_dir`` (files copied from ``mirror``
    if given). FileNotFoundError says what to place where and which substitutes exist."""
    return obtain_declared(SOURCE, raw_dir, mirrors=(mirror,))


def read_list(path: str | Path, components: int) -> list[ListedImage]:
    """The image paths of a ``*_lst`` file, each with at least ``components`` path components
    (2 for FaceScrub ``<identity>/<image>``, 3 for MegaFace ``<a>/<b>/<image>``); ValueError naming the
    line on a blank or malformed line or a repeated image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found; it is part of insightface's MegaFace test pack")
    images, seen = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where, relative = f"{path}:{number}", line.strip()
        parts = PurePosixPath(relative).parts
        if len(parts) < components or relative.startswith("/") or ".." in parts:
            shape = "<identity>/<image>" if components == 2 else "<a>/<b>/<image>"
            raise ValueError(f"{where}: expected a relative image path ending in {shape}, got {line!r}")
        key = "/".join(parts[-components:])
        if key in seen:
            raise ValueError(f"{where}: image {key} is listed twice (first at line {seen[key]})")
        seen[key] = number
        images.append(ListedImage(where, relative, key))
    if not images:
        raise ValueError(f"{path}: the list is empty")
    return images


def _text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: noise list not found; it is part of insightface's MegaFace test pack")
    return path.read_text(encoding="utf-8")


def parse_facescrub_noises(text: str, source: str = PROBE_NOISES) -> list[str]:
    """The entries of ``facescrub_noises.txt``: image file names ``<identity>_<number>.<ext>``."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if line.startswith("#") or not entry:
            continue
        stem = entry.split(".")[0]
        if "/" in entry or "_" not in stem or not stem.rsplit("_", 1)[0]:
            raise ValueError(
                f"{source}:{number}: expected an image file name '<identity>_<number>.<ext>', got {line!r}"
            )
        entries.append(entry)
    return entries


def parse_megaface_noises(text: str, source: str = DISTRACTOR_NOISES) -> list[str]:
    """The entries of ``megaface_noises.txt``: ``<a>/<b>/<image>`` (a tab-separated line gives its second field)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if line.startswith("#") or not entry:
            continue
        fields = entry.split("\t")
        if len(fields) > 1:
            entry = fields[1]
        if len(entry.split("/")) != 3 or not all(entry.split("/")):
            raise ValueError(f"{source}:{number}: expected a distractor path '<a>/<b>/<image>', got {line!r}")
        entries.append(entry)
    return entries


def _noise_rows(list_name: str, entries: list[str], marked: dict[str, list[str]]) -> list[tuple[str, str, str | None]]:
    """One ``(list, entry, path)`` row per image an entry marks, or one with path None."""
    rows: list[tuple[str, str, str | None]] = []
    for entry in entries:
        rows.extend((list_name, entry, path) for path in marked.get(entry, [None]))  # type: ignore[list-item]
    return rows


def _check_probe_noises(probes: list[ListedImage], noisy_names: set[str]) -> None:
    """Every identity with a noisy probe keeps a clean one (insightface replaces noisy probes by the
    identity's clean-feature centre)."""
    clean = {p.key.split("/")[0] for p in probes if p.key.split("/")[1] not in noisy_names}
    for probe in probes:
        identity, name = probe.key.split("/")
        if name in noisy_names and identity not in clean:
            raise ValueError(
                f"{probe.where}: every probe of identity {identity!r} is in {PROBE_NOISES}; "
                "the noise list does not belong to this facescrub_lst"
            )


def _store(
    listed: list[tuple[str, ListedImage, Path]], out_dir: Path, resize_short_side: int | None
) -> list[str | None]:
    """Store each ``(prepared relative path, listed image, file)``; the stored manifest paths (None: skipped)."""
    with committed_store(out_dir, resize_short_side, images=len(listed)) as store:
        return [
            store.add(relative, file.read_bytes(), source=f"{item.where}: {file}") for relative, item, file in listed
        ]


def prepare_raw(raw_dir: str | Path, out_dir: str | Path, *, resize_short_side: int | None = None) -> Path:
    """Read and check the lists and noise lists, store probes and distractors, write ``noises.parquet``,
    ``identities.json`` and (last) the manifest; return the manifest path."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    probes = read_list(raw_dir / PROBE_LIST, 2)
    distractors = read_list(raw_dir / DISTRACTOR_LIST, 3)
    probe_noises = parse_facescrub_noises(_text(raw_dir / PROBE_NOISES), str(raw_dir / PROBE_NOISES))
    distractor_noises = parse_megaface_noises(_text(raw_dir / DISTRACTOR_NOISES), str(raw_dir / DISTRACTOR_NOISES))
    _check_probe_noises(probes, set(probe_noises))
    listed = [(f"facescrub/{p.key}", p, raw_dir / PROBE_IMAGES / p.relative) for p in probes]
    listed += [(f"megaface/{d.key}", d, raw_dir / DISTRACTOR_IMAGES / d.relative) for d in distractors]
    missing = [f"{item.where}: {file}" for _, item, file in listed if not file.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} listed image(s) not found, e.g. {missing[:3]}; "
            "the lists and the image folders do not belong together"
        )

    stored = _store(listed, out_dir, resize_short_side)
    identities = sorted({p.key.split("/")[0] for p in probes})
    label_of = {name: label for label, name in enumerate(identities)}
    rows, marked_probes, marked_distractors = [], {}, {}
    for index, ((_, item, _), path) in enumerate(zip(listed, stored, strict=True)):
        if path is None:
            continue
        if index < len(probes):
            identity, name = item.key.split("/")
            rows.append((path, label_of[identity], "query"))
            marked_probes.setdefault(name, []).append(path)
        else:
            rows.append((path, -(index - len(probes) + 1), "gallery"))
            marked_distractors.setdefault(item.key, []).append(path)
    noises = pd.DataFrame(
        _noise_rows("facescrub", probe_noises, marked_probes)
        + _noise_rows("megaface", distractor_noises, marked_distractors),
        columns=list(NOISE_COLUMNS),
    )
    write_side_table(noises, out_dir, NOISES_FILENAME)
    write_json(out_dir / IDENTITIES_FILENAME, identities)
    frame = pd.DataFrame(rows, columns=["path", "label", "role"]).astype({"label": np.int64})
    frame.insert(2, "split", "test")
    return write_manifest(frame, out_dir)


def prepare(
    out_dir: str | Path, raw_dir: str | Path, mirror: str | Path | None = None, *, resize_short_side: int | None = None
) -> Path:
    """Check the raw inputs (``fetch_raw``), then ``prepare_raw``; return the manifest path."""
    fetch_raw(raw_dir, mirror)
    return prepare_raw(raw_dir, out_dir, resize_short_side=resize_short_side)


def read_noises(prepared_dir: str | Path) -> pd.DataFrame:
    """The parsed noise lists of a prepared MegaFace: ``list``, ``entry``, ``path`` (null: no prepared image)."""
    return read_side_table(
        prepared_dir, NOISES_FILENAME, NOISE_COLUMNS, "re-run `circle-repro data prepare` for megaface"
    )


def noise_flags(prepared_dir: str | Path, paths: pd.Series | list[str]) -> np.ndarray:
    """One boolean per manifest path: is the image on a noise list (FaceScrub or MegaFace)?"""
    marked = read_noises(prepared_dir)["path"].dropna()
    return pd.Series(paths).isin(set(marked)).to_numpy()


ENTRY = DatasetEntry(name="megaface", prepare=prepare, fetch=fetch_raw, transform="face", in_channels=3)
