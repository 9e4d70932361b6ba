"""Where each data set comes from: the typed, validated view of ``data/sources.yaml``.

``load_sources()`` returns ``{name: Source}``; every error names the file, the data set and the key.
The file's shape is checked against ``sources.schema.yaml``; the rules that join keys follow here. This
module imports no torch, so ``circle-repro data status`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from circle_repro.schema import check, packaged_schema

SOURCES_PATH = Path(__file__).with_name("sources.yaml")

SCHEMA_RESOURCE = "sources.schema.yaml"
_SOURCE_SCHEMA = packaged_schema(__package__, SCHEMA_RESOURCE)["$defs"]["source"]["properties"]
ACCESS_KINDS: tuple[str, ...] = tuple(_SOURCE_SCHEMA["access"]["enum"])
TABLE_IDS: tuple[str, ...] = tuple(_SOURCE_SCHEMA["tables"]["items"]["enum"])
_DIGEST_KEYS = ("md5", "sha256", "content_sha256")


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


def _parse_file(path: Path, where: str, entry: dict[str, Any]) -> SourceFile:
    """One schema-checked file entry, with the rules that join its keys."""
    name = entry["name"]
    if name.startswith("/") or ".." in Path(name).parts:
        raise _fail(path, f"{where}.name", f"must be a relative path inside the raw folder, got {name!r}")
    if name.endswith("/") and any(entry.get(key) for key in _DIGEST_KEYS):
        raise _fail(path, f"{where}.name", "a folder (name ending in '/') cannot carry a checksum")
    if entry.get("content_sha256") and not name.endswith(".gz"):
        raise _fail(path, f"{where}.content_sha256", "only a .gz file has a decompressed content checksum")
    return SourceFile(
        name=name,
        url=entry["url"],
        alt_urls=tuple(entry.get("alt_urls") or ()),
        size_bytes=entry.get("size_bytes"),
        md5=entry.get("md5"),
        sha256=entry.get("sha256"),
        content_sha256=entry.get("content_sha256"),
        content_bytes=entry.get("content_bytes"),
        optional=entry.get("optional", False),
    )


def _parse_source(path: Path, name: str, entry: dict[str, Any]) -> Source:
    """One schema-checked data set entry, with the rules that join its keys."""
    access = entry["access"]
    files = tuple(_parse_file(path, f"{name}.files[{i}]", item) for i, item in enumerate(entry["files"]))
    seen: set[str] = set()
    for i, file in enumerate(files):
        if file.name in seen:
            raise _fail(path, f"{name}.files[{i}].name", f"duplicate file {file.name!r}")
        seen.add(file.name)
    if access == "download" and (not files or not all(f.url for f in files if not f.optional)):
        raise _fail(path, f"{name}.files", "access 'download' needs a url for every required file")
    if access in ("manual", "withdrawn"):
        for i, file in enumerate(files):
            if file.url is not None:
                raise _fail(
                    path,
                    f"{name}.files[{i}].url",
                    f"access {access!r} has no direct url: use null (published or dead URLs go to alt_urls)",
                )
    return Source(
        name=name,
        title=entry["title"],
        access=access,
        licence=entry["licence"],
        tables=tuple(entry["tables"]),
        homepage=entry["homepage"],
        files=files,
        instructions=entry.get("instructions"),
        substitutes=tuple(entry.get("substitutes") or ()),
        expected=tuple((str(key), count) for key, count in (entry.get("expected") or {}).items()),
        notes=entry.get("notes"),
        training_only=entry.get("training_only", False),
        image_size=tuple(entry["image_size"]) if entry.get("image_size") is not None else None,
    )


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
    check(data, packaged_schema(__package__, SCHEMA_RESOURCE), str(path), "data sources", SourcesError)
    return {name: _parse_source(path, name, entry) for name, entry in data.items()}


__all__ = ["ACCESS_KINDS", "SOURCES_PATH", "TABLE_IDS", "Source", "SourceFile", "SourcesError", "load_sources"]
