"""Reading a raw layout's annotations: members of an extracted archive, whitespace-separated text tables
(CUB-200-2011's ``images.txt``, SOP's ``Ebay_*.txt``, ...) and the class-disjoint retrieval split.

Every fault is an :class:`AnnotationError` naming the file (as named inside its archive), the line and
what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


class AnnotationError(ValueError):
    """A raw layout that does not match the data set's published format (file, line and fix named)."""


def require(extracted: Path, member: str, archive: str) -> Path:
    """``extracted/member`` (``member`` as named inside ``archive``), or an AnnotationError saying it is missing."""
    path = extracted / member
    if not path.exists():
        raise AnnotationError(
            f"{archive}: {member} is missing from the archive; is this the original {archive}? "
            "Replace it with the published file."
        )
    return path


def _is_row(line: str, fields: Sequence[str], ints: set[str]) -> bool:
    values = line.split(maxsplit=len(fields) - 1)
    if len(values) != len(fields):
        return False
    return all(values[fields.index(f)].lstrip("-").isdigit() for f in ints)


def read_table(
    path: Path, fields: Sequence[str], display: str, *, header: bool = False, ints: Iterable[str] = ()
) -> list[tuple[int, dict[str, str | int]]]:
    """Rows of a whitespace-separated text table as ``(line number, {field: value})``.

    The last field takes the rest of the line; ``ints`` fields must be integers; ``header`` skips
    (and checks) line 1. Errors name ``display``, the line and the expected fields.
    """
    ints = set(ints)
    expected = " ".join(f"<{f}>" for f in fields)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{display}: not UTF-8 text ({err}); the file is not in the published format") from None
    if header:
        if not lines or _is_row(lines[0], fields, ints):
            raise AnnotationError(
                f"{display} line 1: expected a header line ({' '.join(fields)}), got "
                f"{lines[0] if lines else ''!r}; the file is not in the published format"
            )
        lines = lines[1:]
    rows = []
    for number, line in enumerate(lines, start=2 if header else 1):
        if not line.strip():
            continue
        values = line.split(maxsplit=len(fields) - 1)
        if len(values) != len(fields):
            raise AnnotationError(f"{display} line {number}: expected {expected}, got {line!r}")
        row: dict[str, str | int] = dict(zip(fields, values, strict=True))
        for field in ints:
            try:
                row[field] = int(values[fields.index(field)])
            except ValueError:
                raise AnnotationError(
                    f"{display} line {number}: field <{field}> must be an integer, got "
                    f"{values[fields.index(field)]!r} in {line!r}"
                ) from None
        rows.append((number, row))
    if not rows:
        raise AnnotationError(f"{display}: no rows; expected lines of {expected}")
    return rows


def class_split(label: int, train_classes: range, test_classes: range, where: str) -> str:
    """``train``/``test`` for the class-disjoint split; an AnnotationError for a class in neither range."""
    if label in train_classes:
        return "train"
    if label in test_classes:
        return "test"
    raise AnnotationError(f"{where}: class {label} is outside {train_classes.start}..{test_classes.stop - 1}")


__all__ = ["AnnotationError", "class_split", "read_table", "require"]
