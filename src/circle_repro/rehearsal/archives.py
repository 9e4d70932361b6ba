"""Archives as the data sets ship them: gzipped tars, plain tars and zips of a folder or of named members."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

ARCHIVE_MTIME = 1_600_000_000
"""The modification time of every member: the archives are the same bytes for the same members."""


def member_folders(members: Mapping[str, bytes]) -> list[str]:
    """The folder entries (``a/``, ``a/b/``) of ``members``' names, sorted."""
    folders = {
        parent.as_posix() + "/"
        for name in members
        for parent in PurePosixPath(name).parents
        if parent != PurePosixPath(".")
    }
    return sorted(folders)


def pack_tgz(path: Path, members: Mapping[str, bytes]) -> Path:
    """A gzipped tar of ``members`` with their folder entries first (as ``tar czf`` writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name in member_folders(members):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, ARCHIVE_MTIME
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, ARCHIVE_MTIME
            tar.addfile(info, io.BytesIO(data))
    return path


def pack_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    """A deflated zip of ``members`` with their folder entries first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in member_folders(members):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2016, 1, 1, 0, 0, 0)), b"")
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2016, 1, 1, 0, 0, 0)), data)
    return path


def zip_tree(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` (its name as the top-level entry, folder entries included, sorted)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(folder, folder.name + "/")
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix() + ("/" if path.is_dir() else ""))
    return archive


def tar_tree(folder: Path, archive: Path, arcname: str) -> Path:
    """``folder`` as ``arcname`` in a tar (gzipped when ``archive`` ends in .gz or .tgz)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=arcname)
    return archive


__all__ = ["member_folders", "pack_tgz", "pack_zip", "tar_tree", "zip_tree"]
