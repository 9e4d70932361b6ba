"""Messages for a name that is not defined: the nearest defined names instead of hundreds."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

LIST_ALL_UP_TO = 20
"""A kind with at most this many names lists them all; a larger one only the nearest."""


def nearest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``name``: those that extend it, then by difflib's ratio (at least
    0.7), closest first."""
    choices = list(choices)
    extending = [choice for choice in choices if choice.startswith(name)]
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.7)
    return list(dict.fromkeys([*extending, *close]))[:n]


def unknown_name(kind: str, name: object, choices: Iterable[str], listed_by: str = "") -> str:
    """``unknown <kind> <name>``, the nearest defined names, and all of them when they are few (else how many
    there are and, with ``listed_by``, the command that lists them)."""
    choices = sorted(choices)
    close = nearest(name, choices) if isinstance(name, str) else []
    message = f"unknown {kind} {name!r}"
    if close:
        message += f"; did you mean {', '.join(repr(c) for c in close)}?"
    if len(choices) <= LIST_ALL_UP_TO:
        return message + f"; allowed: {', '.join(choices)}"
    where = f" (`{listed_by}` lists them)" if listed_by else ""
    return message + f"; {len(choices)} are defined{where}"
