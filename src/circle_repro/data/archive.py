"""Safe extraction of .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz / .zip archives.

``safe_extract(archive, dest)`` checks every member before writing anything and refuses
(:class:`UnsafeArchiveError`) absolute names, names that climb out of ``dest`` with ``..``,
symlinks, hardlinks, device files and FIFOs. Truncated or corrupt archives raise
:class:`CorruptArchiveError`. Members are written into a temporary sibling folder that is
renamed onto ``dest`` only when everything was extracted, so a failure leaves no partial output.
Only regular files and folders are created; owners are not restored and modes follow the umask
(0644 / 0755 under umask 022; 0755 for a member that was executable).
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from circle_repro.io import umask_mode

CHUNK_SIZE = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)


class ArchiveError(Exception):
    """Base class of the errors raised while extracting an archive."""


class UnsafeArchiveError(ArchiveError):
    """A member would write outside the destination or create a link/device."""

    def __init__(self, archive: Path, member: str, reason: str) -> None:
        self.archive = Path(archive)
        self.member = member
        super().__init__(f"{self.archive}: refusing member {member!r}: {reason}; nothing was extracted")


class CorruptArchiveError(ArchiveError):
    """The archive is truncated, damaged, or not an archive of the expected kind."""


def _member_path(archive: Path, name: str, *, zip_member: bool = False) -> PurePosixPath | None:
    """The member's path relative to the destination, or None for the root itself; raise if unsafe.

    Backslashes count as separators for the escape check (zip files written on Windows use them);
    in zip members, where they can only mean a Windows path, they are refused outright.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(archive, name, "NUL byte in the name")
    # Backslashes are separators on Windows; treat them as such for the safety check.
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) >= 2 and unified[1] == ":" and unified[0].isalpha()):
        raise UnsafeArchiveError(archive, name, "absolute path")
    if zip_member and "\\" in name:
        raise UnsafeArchiveError(archive, name, "backslash in the name (Windows path separator)")
    _normalised(archive, name, unified.split("/"))  # would it escape on Windows?
    parts = _normalised(archive, name, name.split("/"))
    return PurePosixPath(*parts) if parts else None


def _normalised(archive: Path, name: str, components: list[str]) -> list[str]:
    """Resolve ``.``/``..``/empty components; raise if ``..`` climbs above the destination."""
    parts: list[str] = []
    for part in components:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchiveError(archive, name, "'..' escapes the destination")
            parts.pop()
            continue
        parts.append(part)
    return parts


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    raise ValueError(f"{archive}: unknown archive type; expected one of {TAR_SUFFIXES + ZIP_SUFFIXES}")


# --- tar ----------------------------------------------------------------------------------------


def _tar_plan(archive: Path, tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, PurePosixPath | None]]:
    plan = []
    for member in tar.getmembers():
        relative = _member_path(archive, member.name)
        if member.issym():
            raise UnsafeArchiveError(archive, member.name, f"symbolic link (-> {member.linkname!r})")
        if member.islnk():
            raise UnsafeArchiveError(archive, member.name, f"hard link (-> {member.linkname!r})")
        if member.ischr() or member.isblk():
            raise UnsafeArchiveError(archive, member.name, "device file")
        if member.isfifo():
            raise UnsafeArchiveError(archive, member.name, "FIFO")
        if not (member.isreg() or member.isdir()):
            raise UnsafeArchiveError(archive, member.name, f"unsupported member type {member.type!r}")
        if relative is None and not member.isdir():
            raise UnsafeArchiveError(archive, member.name, "file member without a name")
        plan.append((member, relative))
    return plan


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """Require the end-of-archive zero block and read to the end of the (compressed) stream.

    tarfile silently stops at a header cut off at a member boundary; the missing zero block
    shows the truncation. Reading to the end makes gzip/bz2/xz check their trailer and CRC.
    """
    fileobj = tar.fileobj
    fileobj.seek(tar.offset)
    block = fileobj.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise CorruptArchiveError(
            f"{archive}: truncated tar archive (no end-of-archive marker after the last member); download it again"
        )
    while fileobj.read(CHUNK_SIZE):
        pass


def _extract_tar(archive: Path, staging: Path) -> list[PurePosixPath]:
    files: list[PurePosixPath] = []
    with tarfile.open(archive, "r:*") as tar:
        plan = _tar_plan(archive, tar)
        _check_tar_end(archive, tar)
        for member, relative in plan:
            if relative is None:
                continue
            target = staging / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - isreg() members always have data
                raise CorruptArchiveError(f"{archive}: member {member.name!r} has no data")
            with source, open(target, "wb") as out:
                copied = _copy(source, out)
            if copied != member.size:
                raise CorruptArchiveError(
                    f"{archive}: member {member.name!r} is truncated ({copied} of "
                    f"{member.size} bytes); download the archive again"
                )
            os.chmod(target, umask_mode(0o777 if member.mode & 0o111 else 0o666))
            os.utime(target, (member.mtime, member.mtime))
            files.append(relative)
    return files


# --- zip ----------------------------------------------------------------------------------------


def _zip_plan(archive: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath | None]]:
    plan = []
    for info in zf.infolist():
        relative = _member_path(archive, info.filename, zip_member=True)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(archive, info.filename, "symbolic link")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(archive, info.filename, f"special file (mode {oct(mode)})")
        if relative is None and not info.is_dir():
            raise UnsafeArchiveError(archive, info.filename, "file member without a name")
        if info.flag_bits & 0x1:
            raise CorruptArchiveError(f"{archive}: member {info.filename!r} is encrypted")
        plan.append((info, relative))
    return plan


def _extract_zip(archive: Path, staging: Path) -> list[PurePosixPath]:
    files: list[PurePosixPath] = []
    with zipfile.ZipFile(archive) as zf:
        for info, relative in _zip_plan(archive, zf):
            if relative is None:
                continue
            target = staging / relative
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(target, "wb") as out:  # CRC checked at the end of the stream
                copied = _copy(source, out)
            if copied != info.file_size:
                raise CorruptArchiveError(f"{archive}: member {info.filename!r} is truncated")
            mode = info.external_attr >> 16
            os.chmod(target, umask_mode(0o777 if mode & 0o111 else 0o666))
            mtime = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(target, (mtime, mtime))
            files.append(relative)
    return files


def _copy(source, out) -> int:
    copied = 0
    while chunk := source.read(CHUNK_SIZE):
        out.write(chunk)
        copied += len(chunk)
    return copied


_DAMAGE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def _raise_if_damaged(archive: Path, err: BaseException) -> None:
    """Turn a decoder's complaint into CorruptArchiveError; let real I/O errors (with an errno) through."""
    if isinstance(err, OSError) and not isinstance(err, gzip.BadGzipFile) and err.errno is not None:
        return  # disk full, permission denied, ...: not the archive's fault
    raise CorruptArchiveError(f"{archive}: corrupt or truncated archive ({err}); download it again") from None


# --- public -------------------------------------------------------------------------------------


def list_members(archive: str | os.PathLike[str]) -> list[str]:
    """Member names of an archive after the safety checks (raises like :func:`safe_extract`)."""
    archive = Path(archive)
    try:
        if _archive_kind(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                return [info.filename for info, _ in _zip_plan(archive, zf)]
        with tarfile.open(archive, "r:*") as tar:
            plan = _tar_plan(archive, tar)
            _check_tar_end(archive, tar)
            return [member.name for member, _ in plan]
    except _DAMAGE_ERRORS as err:
        _raise_if_damaged(archive, err)
        raise


def safe_extract(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Extract ``archive`` into the folder ``dest``; return the extracted files (under ``dest``).

    ``dest`` must not exist unless ``overwrite`` is set, in which case it is replaced only after
    the new content has been extracted completely.
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    kind = _archive_kind(archive)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; remove it or pass overwrite=True")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".extracting"))
    try:
        try:
            files = _extract_zip(archive, staging) if kind == "zip" else _extract_tar(archive, staging)
        except _DAMAGE_ERRORS as err:
            _raise_if_damaged(archive, err)
            raise
        os.chmod(staging, umask_mode(0o777))  # mkdtemp made it 0700
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / "content")
            os.rename(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return [dest / relative for relative in files]


__all__ = ["ArchiveError", "CorruptArchiveError", "UnsafeArchiveError", "list_members", "safe_extract"]
