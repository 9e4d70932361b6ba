"""Resumable, checksummed, atomic downloads using only the standard library for the transfer.

``fetch(url, dest, sha256=..., md5=...)`` streams into ``<dest>.part``, resuming an existing
``.part`` with an HTTP ``Range`` request (or a seek, for ``file://`` URLs and plain local paths),
verifies the checksum of the finished ``.part`` and only then renames it onto ``dest``. A
checksum mismatch deletes the ``.part`` and raises :class:`ChecksumError`; an interrupted
transfer keeps the ``.part`` so that the next call resumes it.

``mirror`` points a download at a local copy: a folder (or ``file://`` URL, or any base URL)
holding the file under the URL's basename, e.g. ``fetch(url, dest, mirror="/data/mirror")``
reads ``/data/mirror/CUB_200_2011.tgz`` for ``url=https://.../CUB_200_2011.tgz``.

Two processes must not fetch the same ``dest`` at the same time (they would share the ``.part``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CHUNK_SIZE = 1 << 20
DEFAULT_TIMEOUT_S = 60.0
USER_AGENT = "circle-repro-fetch/1"


class DownloadError(RuntimeError):
    """The transfer itself failed (unreachable host, HTTP error, cut connection).

    ``resumable`` is True when a ``.part`` was kept and another attempt would resume it.
    """

    def __init__(self, message: str, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable


class ChecksumError(ValueError):
    """A file's digest differs from the expected one."""

    def __init__(self, path: Path, algorithm: str, expected: str, actual: str, fix: str) -> None:
        self.path = Path(path)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(f"{self.path}: {algorithm} mismatch: expected {expected}, got {actual}. {fix}")


def _expected_digests(sha256: str | None, md5: str | None) -> dict[str, str]:
    expected = {}
    for name, value, length in (("sha256", sha256, 64), ("md5", md5, 32)):
        if value is None:
            continue
        value = value.strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{length}}}", value):
            raise ValueError(f"{name} must be {length} hex digits, got {value!r}")
        expected[name] = value
    return expected


def file_digests(path: str | os.PathLike[str], algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file's bytes, read once in chunks, for each named hashlib algorithm."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _check(path: Path, expected: dict[str, str], reported_as: Path, fix: str) -> None:
    actual = file_digests(path, tuple(expected))
    for name, value in expected.items():
        if actual[name] != value:
            raise ChecksumError(reported_as, name, value, actual[name], fix)


def verify(path: str | os.PathLike[str], sha256: str | None = None, md5: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has every given digest (at least one is required)."""
    expected = _expected_digests(sha256, md5)
    if not expected:
        raise ValueError(f"verify({path}): give sha256 and/or md5")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file to verify")
    _check(path, expected, path, "The file is corrupt or a different version; delete it and fetch it again.")


def _source_for(url: str, mirror: str | os.PathLike[str] | None) -> str:
    """The URL (or local path) actually read: ``url`` itself, or ``mirror/<basename of url>``."""
    if mirror is None:
        return url
    basename = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not basename:
        raise ValueError(f"cannot mirror {url!r}: its path has no file name")
    mirror = os.fspath(mirror)
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(basename)
    return str(Path(mirror) / basename)


def _local_path(source: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names; None for network URLs."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{source}: file:// URLs must name a local file (no host)")
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme in ("http", "https", "ftp"):
        return None
    if parts.scheme and len(parts.scheme) > 1:  # one letter is a Windows drive
        raise ValueError(f"{source}: unsupported URL scheme {parts.scheme!r} (http, https, ftp, file, or a local path)")
    return Path(source)


@contextlib.contextmanager
def _progress_bar(total: int | None, initial: int, label: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr, or a no-op when disabled, when stderr is not a TTY, or without tqdm."""
    bar = None
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency, but a bar is optional
            tqdm = None
        if tqdm is not None:
            bar = tqdm(
                total=total,
                initial=initial,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                file=sys.stderr,
                leave=False,
            )
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _copy_stream(src: IO[bytes], part: Path, mode: str, bar: Any) -> int:
    written = 0
    with open(part, mode) as out:
        while chunk := src.read(CHUNK_SIZE):
            out.write(chunk)
            written += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return written


def _transfer_local(src_path: Path, part: Path, progress: bool, label: str) -> None:
    if not src_path.is_file():
        raise DownloadError(f"{src_path}: no such file (source of {label})")
    total = src_path.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:  # not a prefix of this source: start over
        offset = 0
    with open(src_path, "rb") as src, _progress_bar(total, offset, label, progress) as bar:
        src.seek(offset)
        _copy_stream(src, part, "ab" if offset else "wb", bar)
    if part.stat().st_size != total:
        raise DownloadError(f"{src_path}: copied {part.stat().st_size} of {total} bytes into {part}")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _transfer_http(url: str, part: Path, progress: bool, label: str, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the .part may already be the whole file.
            match = re.search(r"/(\d+)", err.headers.get("Content-Range", ""))
            err.close()
            if match and int(match.group(1)) == offset:
                return
            part.unlink(missing_ok=True)  # longer than the file: not a prefix of it
            raise DownloadError(
                f"{url}: server refused to resume at byte {offset}; the stale {part} was deleted, "
                "run again to download from scratch",
                resumable=True,
            ) from None
        err.close()
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None
    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(
                    f"{url}: server answered the resume request for byte {offset} with "
                    f"Content-Range {response.headers.get('Content-Range')!r}"
                )
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:  # 200: whole file (server ignores Range, or nothing to resume)
            offset = 0
            total = int(length) if length is not None else None
            mode = "wb"
        with _progress_bar(total, offset, label, progress) as bar:
            try:
                _copy_stream(response, part, mode, bar)
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(
                    f"{url}: transfer interrupted ({err!r}); run again to resume from {part}", resumable=True
                ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} of {total} bytes; run again to resume from {part}", resumable=True)


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    mirror: str | os.PathLike[str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = 2,
) -> Path:
    """Download ``url`` to ``dest`` resumably, verify it, and land it atomically; return ``dest``.

    ``url`` may be http(s)/ftp, ``file://`` or a plain local path. ``mirror`` (a local folder,
    ``file://`` URL or base URL) replaces the URL's host and path by ``mirror/<basename>``.
    An existing ``dest`` that passes the checksum is kept without any transfer; one that fails
    it is replaced only once a fresh copy has been verified. ``retries`` extra attempts resume
    the ``.part`` after a cut connection (HTTP errors such as 404 are not retried).
    """
    expected = _expected_digests(sha256, md5)
    dest = Path(dest)
    source = _source_for(url, mirror)
    label = dest.name
    if dest.is_file():
        if not expected:
            return dest
        try:
            _check(dest, expected, dest, "")
            return dest
        except ChecksumError:
            pass  # re-download; the existing file stays until the new one is verified
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    local = _local_path(source)
    attempt = 0
    while True:
        try:
            if local is not None:
                _transfer_local(local, part, progress, label)
            else:
                _transfer_http(source, part, progress, label, timeout)
            break
        except DownloadError as err:
            if not err.resumable or attempt >= retries:
                raise
            attempt += 1
            time.sleep(min(0.5 * 2**attempt, 8.0))
    if expected:
        where = f"from {source}" + (f" (mirror of {url})" if mirror is not None else "")
        fix = (
            f"The partial download {part.name} was deleted. Run again to re-download {where}; if it keeps "
            "failing the source has changed or is corrupt: check the URL/mirror copy against the published "
            "checksum before changing the expected value."
        )
        try:
            _check(part, expected, dest, fix)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


__all__ = ["ChecksumError", "DownloadError", "fetch", "file_digests", "verify"]
