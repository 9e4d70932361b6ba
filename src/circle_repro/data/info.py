"""Where each data set's raw files go, read from ``sources.yaml``: ``circle-repro data info [NAME]``.

``format_info`` describes one data set (files, sizes, checksums, how to obtain them, the prepare command);
``format_placement_table`` is the README's table of every data set. Standard library and PyYAML only.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Mapping
from pathlib import Path

from circle_repro.data.sources import Source, SourceFile
from circle_repro.layout import PREPARED_ROOT, RAW_ROOT


class UnknownDatasetError(ValueError):
    """A data set name that ``sources.yaml`` does not hold; the message suggests the nearest names."""


def find_source(sources: Mapping[str, Source], name: str) -> Source:
    """The entry called ``name``; an unknown name raises with the closest names (or, failing that, all)."""
    if name in sources:
        return sources[name]
    lowered = {key.lower(): key for key in sources}
    if name.lower() in lowered:
        return sources[lowered[name.lower()]]
    # Titles count too: "Market-1501" or "stanford online products" finds its entry.
    candidates = {key: key for key in sources} | {source.title.lower(): key for key, source in sources.items()}
    matches = difflib.get_close_matches(name.lower(), candidates, n=6, cutoff=0.5)
    nearest = list(dict.fromkeys(candidates[match] for match in matches))[:3]
    hint = f"did you mean {' or '.join(nearest)}?" if nearest else f"known data sets: {', '.join(sources)}"
    raise UnknownDatasetError(f"unknown data set {name!r}; {hint} (`circle-repro data status` lists them all)")


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "size not published"
    if size_bytes < 1024:
        return f"{size_bytes} B"
    value = size_bytes / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def _checksum(file: SourceFile) -> str:
    for key in ("sha256", "md5", "content_sha256"):
        value = getattr(file, key)
        if value:
            return f"{key.replace('content_sha256', 'sha256 of the content')} {value}"
    return "no checksum published" if not file.is_dir else "a folder"


def _file_line(file: SourceFile) -> str:
    role = "optional" if file.optional else "required"
    origin = f"from {file.url}" if file.url else "placed by hand"
    return f"  {file.name}  ({role}; {_size(file.size_bytes)}; {_checksum(file)}; {origin})"


def format_info(source: Source, raw_root: Path = RAW_ROOT, prepared_root: Path = PREPARED_ROOT) -> str:
    """A plain-text description of where ``source``'s files go and how to obtain and prepare them."""
    raw = raw_root / source.name
    tables = ", ".join(source.tables) if source.tables else "none"
    lines = [
        f"{source.name}: {source.title}",
        f"access: {source.access}; tables: {tables}",
        f"licence: {source.licence}",
    ]
    if source.homepage:
        lines.append(f"homepage: {source.homepage}")
    if source.access == "embedded":
        lines.append("files: none to place (the data ships inside an installed package)")
    else:
        lines.append(f"files, under {raw}/:")
        lines.extend(_file_line(file) for file in source.files)
    if source.access == "download":
        lines.append(f"obtain: `circle-repro data fetch {source.name}` downloads and verifies the files")
    if source.instructions:
        lines.append("how:")
        lines.extend(textwrap.wrap(source.instructions, width=100, initial_indent="  ", subsequent_indent="  "))
    if source.substitutes:
        lines.append("substitutes:")
        for substitute in source.substitutes:
            lines.extend(textwrap.wrap(substitute, width=100, initial_indent="  - ", subsequent_indent="    "))
    lines.append(
        f"prepare: circle-repro data prepare {source.name} --out {prepared_root / source.name}"
        + ("" if source.access == "embedded" else f"  (reads {raw}/)")
    )
    return "\n".join(lines)


def _placed_files(source: Source) -> str:
    if source.access == "embedded":
        return "nothing: it ships inside an installed package"
    required = [file.name for file in source.files if not file.optional]
    names = required or [file.name for file in source.files]
    listed = ", ".join(f"`{name}`" for name in names)
    if source.access == "download":
        return f"{listed} (`data fetch` downloads)"
    return listed if required else f"{listed} (which of them: `data info {source.name}`)"


def format_placement_table(sources: Mapping[str, Source]) -> str:
    """The README's Markdown table: per data set, its access, the paper tables and what goes in its raw folder."""
    rows = [
        f"| data set | access | paper tables | what goes in `{RAW_ROOT}/<data set>/` |",
        "|---|---|---|---|",
    ]
    for source in sources.values():
        tables = ", ".join(table.removeprefix("table") for table in source.tables) or "—"
        rows.append(f"| `{source.name}` {source.title} | {source.access} | {tables} | {_placed_files(source)} |")
    return "\n".join(rows)


__all__ = ["UnknownDatasetError", "find_source", "format_info", "format_placement_table"]
