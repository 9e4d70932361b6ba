"""What the face preparers (MS1M packs, verification packs, YTF) share: hand-placed raw files, image storing.

Every face data set is obtained by hand (``access: manual`` in sources.yaml). A declared file or
folder absent from ``raw_dir`` is copied in from the first *mirror* (a local folder holding it under
its declared name) that has it; what is still missing raises FileNotFoundError saying which
file(s) to place where, with the entry's instructions and substitutes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from circle_repro.data.download import fetch, verify
from circle_repro.data.image_store import ImageStore
from circle_repro.data.manifest import manifest_path
from circle_repro.data.sources import Source
from circle_repro.data.status import is_verified, mark_verified


def missing_error(source: Source, raw_dir: Path, names: Sequence[str], *, one_of: bool = False) -> FileNotFoundError:
    """The error for absent raw files: what to place where, how to obtain it, and the substitutes."""
    targets = [str(raw_dir / name) + ("/" if name.endswith("/") else "") for name in names]
    wanted = ("one of " if one_of else "") + ", ".join(targets)
    message = f"{source.title} ({source.name}): raw data not found; place {wanted}. {source.instructions or ''}"
    if source.substitutes:
        message += " Substitutes: " + "; ".join(source.substitutes) + "."
    return FileNotFoundError(message.strip())


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a folder file by file (resumable) into ``<target>.partial``, renamed onto ``target`` when complete."""
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        fetch(str(file), partial / file.relative_to(source), progress=False)
    partial.rename(target)


def locate(source: Source, raw_dir: str | Path, name: str, mirrors: Sequence[str | Path | None] = ()) -> Path | None:
    """``raw_dir/<name>`` (a trailing ``/`` names a folder), copied from the first mirror holding it if absent.

    A file with a declared checksum is verified once (and stamped, as ``data status`` does); a
    mismatch raises ChecksumError. Returns None when neither ``raw_dir`` nor a mirror has it.
    """
    declared = {file.name: file for file in source.files}[name]
    path = Path(raw_dir) / name.rstrip("/")
    if not path.exists():
        for mirror in (Path(m) for m in mirrors if m is not None):
            candidate = mirror / name.rstrip("/")
            if declared.is_dir and candidate.is_dir():
                _copy_folder(candidate, path)
                break
            if not declared.is_dir and candidate.is_file():
                fetch(str(candidate), path, md5=declared.md5, sha256=declared.sha256, progress=False)
                break
    if not path.exists():
        return None
    if declared.has_checksum and not is_verified(path):
        verify(path, sha256=declared.sha256, md5=declared.md5)
        mark_verified(path, {k: v for k, v in (("md5", declared.md5), ("sha256", declared.sha256)) if v})
    return path


def obtain(source: Source, raw_dir: str | Path, names: Sequence[str],
           mirrors: Sequence[str | Path | None] = ()) -> dict[str, Path]:
    """``{name: path}`` of every file in ``names`` (see :func:`locate`); FileNotFoundError lists the absent ones."""
    found = {name: locate(source, raw_dir, name, mirrors) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise missing_error(source, Path(raw_dir), missing)
    return {name: path for name, path in found.items() if path is not None}


@contextlib.contextmanager
def committed_store(out_dir: str | Path, resize_short_side: int | None) -> Iterator[ImageStore]:
    """An :class:`ImageStore` committed when the block succeeds (and discarded when it fails).

    An old manifest is removed first: it must not name the new images. Write the extra
    evaluation files and then the manifest (last) after the block.
    """
    with ImageStore(out_dir, resize_short_side) as store:
        yield store
        manifest_path(out_dir).unlink(missing_ok=True)
        store.commit()


__all__ = ["committed_store", "locate", "missing_error", "obtain"]
