"""Where each data set comes from: the typed, validated view of ``data/sources.yaml``.

``load_sources()`` returns ``{name: Source}``; every error names the file, the data set and the key.
This module imports only the standard library and PyYAML (no torch), so ``circle-repro data status``
stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SOURCES_PATH = Path(__file__).with_name("sources.yaml")
ACCESS_KINDS = ("download", "manual", "withdrawn", "embedded")
TABLE_IDS = ("table1", "table2", "table3", "table4", "table5")

_REQUIRED_KEYS = ("title", "access", "licence", "tables", "homepage", "files")
_OPTIONAL_KEYS = ("instructions", "substitutes", "expected", "notes", "training_only", "image_size")
_FILE_REQUIRED = ("name", "url")
_FILE_OPTIONAL = ("alt_urls", "size_bytes", "md5", "sha256", "content_sha256", "content_bytes", "optional")
_HEX_LENGTHS = {"md5": 32, "sha256": 64, "content_sha256": 64}


class SourcesError(ValueError):
    """``sources.yaml`` (or a file like it) is malformed; the message names file, data set and key."""


@dataclass(frozen=True)
class SourceFile:
    """One archive or file of a data set, stored at ``data/raw/<data set>/<name>``.

    A name ending in ``/`` is a folder (present when it exists; it has no checksum).
    ``sha256``/``md5`` are digests of the file bytes, ``content_sha256`` of its decompressed content
    (``.gz`` only). ``optional`` files are not needed for the data set to count as downloaded.
    """

    name: str
    url: str | None
    alt_urls: tuple[str, ...] = ()
    size_bytes: int | None = None
    md5: str | None = None
    sha256: str | None = None
    content_sha256: str | None = None
    content_bytes: int | None = None
    optional: bool = False

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def has_checksum(self) -> bool:
        return any((self.md5, self.sha256, self.content_sha256))


@dataclass(frozen=True)
class Source:
    """How one data set is obtained (see the comment at the top of ``sources.yaml``)."""

    name: str
    title: str
    access: str
    licence: str
    tables: tuple[str, ...]
    homepage: str | None
    files: tuple[SourceFile, ...]
    instructions: str | None = None
    substitutes: tuple[str, ...] = ()
    expected: tuple[tuple[str, int], ...] = ()
    notes: str | None = None
    training_only: bool = False
    image_size: tuple[int, int] | None = None

    @property
    def expected_counts(self) -> dict[str, int]:
        return dict(self.expected)

    @property
    def train_images(self) -> int | None:
        """Documented training images: ``expected.train_images``, or ``images`` of a training-only set."""
        counts = self.expected_counts
        return counts.get("images") if self.training_only else counts.get("train_images")

    @property
    def train_classes(self) -> int | None:
        """Documented training classes: ``expected.train_classes`` (``train_identities`` for re-ID), or
        ``classes`` of a training-only set."""
        counts = self.expected_counts
        if self.training_only:
            return counts.get("classes")
        return counts.get("train_classes", counts.get("train_identities"))


def _fail(path: Path, where: str, message: str) -> SourcesError:
    return SourcesError(f"{path}: {where}: {message}")


def _string(path: Path, where: str, value: Any, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"expected a non-empty string{' or null' if nullable else ''}, got {value!r}")
    return value


def _strings(path: Path, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, where, f"expected a list of strings, got {value!r}")
    return tuple(_string(path, f"{where}[{i}]", item) for i, item in enumerate(value))  # type: ignore[misc]


def _count(path: Path, where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, where, f"expected a non-negative integer or null, got {value!r}")
    return value


def _unknown_keys(path: Path, where: str, entry: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", f"unknown key; allowed: {', '.join(allowed)}")


def _check_mapping(path: Path, where: str, entry: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """``entry`` is a mapping holding every required key and no key outside required + optional."""
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected a mapping, got {entry!r}")
    for key in required:
        if key not in entry:
            raise _fail(path, f"{where}.{key}", "missing required key")
    _unknown_keys(path, where, entry, required + optional)


def _parse_file(path: Path, where: str, entry: Any) -> SourceFile:
    _check_mapping(path, where, entry, _FILE_REQUIRED, _FILE_OPTIONAL)
    name = _string(path, f"{where}.name", entry["name"])
    assert name is not None
    if name.startswith("/") or ".." in Path(name).parts:
        raise _fail(path, f"{where}.name", f"must be a relative path inside the raw folder, got {name!r}")
    digests: dict[str, str | None] = {}
    for key, length in _HEX_LENGTHS.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(rf"[0-9a-f]{{{length}}}", value)):
            raise _fail(path, f"{where}.{key}", f"expected {length} lower-case hex digits or null, got {value!r}")
        digests[key] = value
    if name.endswith("/") and any(digests.values()):
        raise _fail(path, f"{where}.name", "a folder (name ending in '/') cannot carry a checksum")
    if digests["content_sha256"] and not name.endswith(".gz"):
        raise _fail(path, f"{where}.content_sha256", "only a .gz file has a decompressed content checksum")
    optional = entry.get("optional", False)
    if not isinstance(optional, bool):
        raise _fail(path, f"{where}.optional", f"expected true or false, got {optional!r}")
    return SourceFile(
        name=name,
        url=_string(path, f"{where}.url", entry["url"], nullable=True),
        alt_urls=_strings(path, f"{where}.alt_urls", entry.get("alt_urls")),
        size_bytes=_count(path, f"{where}.size_bytes", entry.get("size_bytes")),
        md5=digests["md5"],
        sha256=digests["sha256"],
        content_sha256=digests["content_sha256"],
        content_bytes=_count(path, f"{where}.content_bytes", entry.get("content_bytes")),
        optional=optional,
    )


def _parse_source(path: Path, name: str, entry: Any) -> Source:
    _check_mapping(path, name, entry, _REQUIRED_KEYS, _OPTIONAL_KEYS)
    access = entry["access"]
    if access not in ACCESS_KINDS:
        raise _fail(path, f"{name}.access", f"{access!r} is not one of {', '.join(ACCESS_KINDS)}")
    tables = entry["tables"]
    if not isinstance(tables, list):
        raise _fail(path, f"{name}.tables", f"expected a list of table ids, got {tables!r}")
    for i, table in enumerate(tables):
        if table not in TABLE_IDS:
            raise _fail(path, f"{name}.tables[{i}]", f"{table!r} is not one of {', '.join(TABLE_IDS)}")
    if len(set(tables)) != len(tables):
        raise _fail(path, f"{name}.tables", f"duplicate table id in {tables!r}")
    files_entry = entry["files"]
    if not isinstance(files_entry, list):
        raise _fail(path, f"{name}.files", f"expected a list, got {files_entry!r}")
    files = tuple(_parse_file(path, f"{name}.files[{i}]", item) for i, item in enumerate(files_entry))
    seen: set[str] = set()
    for i, file in enumerate(files):
        if file.name in seen:
            raise _fail(path, f"{name}.files[{i}].name", f"duplicate file {file.name!r}")
        seen.add(file.name)
    instructions = _string(path, f"{name}.instructions", entry.get("instructions"), nullable=True)
    substitutes = _strings(path, f"{name}.substitutes", entry.get("substitutes"))
    if access == "download" and (not files or not all(f.url for f in files if not f.optional)):
        raise _fail(path, f"{name}.files", "access 'download' needs a url for every required file")
    if access in ("manual", "withdrawn"):
        if instructions is None:
            raise _fail(path, f"{name}.instructions", f"access {access!r} needs instructions")
        for i, file in enumerate(files):
            if file.url is not None:
                raise _fail(
                    path,
                    f"{name}.files[{i}].url",
                    f"access {access!r} has no direct url: use null (published or dead URLs go to alt_urls)",
                )
    if access == "withdrawn" and not substitutes:
        raise _fail(path, f"{name}.substitutes", "access 'withdrawn' needs substitutes")
    expected_entry = entry.get("expected") or {}
    if not isinstance(expected_entry, dict):
        raise _fail(path, f"{name}.expected", f"expected a mapping of counts, got {expected_entry!r}")
    training_only = entry.get("training_only", False)
    if not isinstance(training_only, bool):
        raise _fail(path, f"{name}.training_only", f"expected true or false, got {training_only!r}")
    image_size = _image_size(path, name, entry.get("image_size"))
    expected = []
    for key, value in expected_entry.items():
        count = _count(path, f"{name}.expected.{key}", value)
        if count is None:
            raise _fail(path, f"{name}.expected.{key}", "expected a non-negative integer, got null")
        expected.append((str(key), count))
    return Source(
        name=name,
        title=_string(path, f"{name}.title", entry["title"]),  # type: ignore[arg-type]
        access=access,
        licence=_string(path, f"{name}.licence", entry["licence"]),  # type: ignore[arg-type]
        tables=tuple(tables),
        homepage=_string(path, f"{name}.homepage", entry["homepage"], nullable=True),
        files=files,
        instructions=instructions,
        substitutes=substitutes,
        expected=tuple(expected),
        notes=_string(path, f"{name}.notes", entry.get("notes"), nullable=True),
        training_only=training_only,
        image_size=image_size,
    )


def _image_size(path: Path, name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise _fail(
            path, f"{name}.image_size", f"expected [height, width] in pixels (positive integers), got {value!r}"
        )
    return value[0], value[1]


def load_sources(path: str | Path | None = None) -> dict[str, Source]:
    """Parse and validate a sources file (default: the package's ``sources.yaml``); keep its order."""
    path = Path(path) if path is not None else SOURCES_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: sources file not found") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        raise SourcesError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not data:
        raise SourcesError(f"{path}: expected a mapping of data set name -> entry")
    sources = {}
    for name, entry in data.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
            raise SourcesError(f"{path}: {name!r}: data set names are lower-case [a-z0-9_]+")
        sources[name] = _parse_source(path, name, entry)
    return sources


__all__ = ["ACCESS_KINDS", "SOURCES_PATH", "TABLE_IDS", "Source", "SourceFile", "SourcesError", "load_sources"]
