"""One validation style for every YAML file the project reads: a JSON schema beside the code that reads it,
and errors that name the file, the key and the allowed values."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

_BOUND_WORDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


class SchemaError(ValueError):
    """A YAML file does not match its schema; the message lists every problem with its key."""


@cache
def packaged_schema(package: str, resource: str) -> dict[str, Any]:
    """A JSON schema (written as YAML) shipped with ``package``."""
    return yaml.safe_load(resources.files(package).joinpath(resource).read_text(encoding="utf-8"))


def key_path(parts: Sequence[Any]) -> str:
    """``a.b[0].c`` for the path ``("a", "b", 0, "c")``; ``<top level>`` for the empty path."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text or "<top level>"


def describe(error: jsonschema.ValidationError) -> str:
    """One problem: its key, what is wrong, what is allowed and (when the schema says) what the key means."""
    message = f"{key_path(list(error.absolute_path))}: {error.message}"
    if error.validator in _BOUND_WORDS:
        message += f"; allowed: {_BOUND_WORDS[error.validator]} {error.validator_value}"
    elif error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        message += f"; allowed: {', '.join(allowed)}" if allowed else "; no keys are allowed here"
    elif error.validator == "pattern":
        message += f"; allowed: strings matching {error.validator_value}"
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    return message + (f" ({hint})" if hint else "")


def schema_problems(data: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``data`` misses ``schema``, described (:func:`describe`), in key order."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [describe(error) for error in errors]


def check(data: Any, schema: dict[str, Any], source: str, what: str, error: type[ValueError] = SchemaError) -> None:
    """Raise ``error`` naming ``source`` and listing every problem when ``data`` misses ``schema``."""
    problems = schema_problems(data, schema)
    if problems:
        raise error(f"{source}: invalid {what}:\n  - " + "\n  - ".join(problems))
