"""Published Circle Loss numbers (Sun et al., CVPR 2020, Tables 1-5) as data.

The numbers live only in ``paper_targets.yaml`` next to this module; this
module loads, validates and reshapes them.  Never type a paper number into
code: read it through :func:`load_paper_targets` / :func:`paper_table`.

Long format (one row per published cell), columns :data:`CELL_COLUMNS`::

    table, row, column, dataset, metric, backbone, loss, embedding_dim,
    is_ours, value, row_index, column_index

``row_index`` / ``column_index`` are the positions of the cell's row and
column in the paper's printed order.  Cells printed as "-" in the paper are
absent from the long format and appear as NaN in :func:`paper_table`.
The per-table metadata (title, protocol, training_data, substitute_data,
notes, unit, metric_labels, rows, columns, different_method) is kept in
``df.attrs["tables"]`` and the citation in ``df.attrs["source"]``.
``substitute_data`` (or None) says why any reproduction of that table is on
stand-in data; ``different_method`` maps a row to why this repository's loss
of the same family is not the method that row cites (its cells are then
reported as "different method", not judged against the published value).

The paper's vocabulary (metric ids, loss ids, backbone labels) maps onto this
repository's names through :func:`repo_metric_name`, :func:`paper_loss_id`
and :data:`REPO_BACKBONES`.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

__all__ = [
    "CELL_COLUMNS",
    "PROTOCOLS",
    "REPO_BACKBONES",
    "load_paper_targets",
    "paper_loss_id",
    "paper_table",
    "repo_metric_name",
]

_RESOURCE = "paper_targets.yaml"

#: Fields every cell must carry (``embedding_dim`` is optional, ``backbone`` may be null).
_REQUIRED_CELL_KEYS = ("table", "row", "column", "dataset", "metric", "backbone", "loss", "is_ours", "value")
_OPTIONAL_CELL_KEYS = ("embedding_dim",)
_REQUIRED_TABLE_KEYS = ("title", "protocol", "training_data", "unit", "rows", "columns", "cells")
_OPTIONAL_TABLE_KEYS = ("notes", "metric_labels", "substitute_data", "different_method")

#: Allowed values of a table's ``protocol``.
PROTOCOLS = frozenset({"megaface", "verification_pairs", "ijb", "reid", "retrieval"})

#: Columns of the long DataFrame returned by :func:`load_paper_targets`.
CELL_COLUMNS = (
    "table",
    "row",
    "column",
    "dataset",
    "metric",
    "backbone",
    "loss",
    "embedding_dim",
    "is_ours",
    "value",
    "row_index",
    "column_index",
)


def _default_path() -> Path:
    return Path(str(importlib.resources.files("circle_repro.report").joinpath(_RESOURCE)))


def _fail(path: Path, where: str, problem: str) -> ValueError:
    return ValueError(f"{path}: {where}: {problem}")


def _cell_where(cell: Mapping[str, Any], table_id: str, index: int) -> str:
    row = cell.get("row", "?")
    col = cell.get("column", "?")
    return f"cell #{index} (table={table_id!r}, row={row!r}, column={col!r})"


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _validate_label_list(path: Path, table_id: str, key: str, labels: Any) -> list[str]:
    where = f"table {table_id!r}"
    if not isinstance(labels, list) or not labels:
        raise _fail(path, where, f"{key!r} must be a non-empty list, got {labels!r}")
    for lab in labels:
        if not isinstance(lab, str) or not lab:
            raise _fail(path, where, f"{key!r} entries must be non-empty strings, got {lab!r}")
    dups = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dups:
        raise _fail(path, where, f"duplicate {key} {dups}")
    return labels


def _parse(path: Path, doc: Any) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Validate the parsed YAML; return (source, table metadata, flat cell records)."""
    if not isinstance(doc, Mapping):
        raise _fail(path, "top level", "expected a mapping with 'source' and 'tables'")
    source = doc.get("source")
    if not isinstance(source, str) or not source:
        raise _fail(path, "top level", "missing or empty 'source'")
    tables = doc.get("tables")
    if not isinstance(tables, Mapping) or not tables:
        raise _fail(path, "top level", "missing or empty 'tables' mapping")

    meta: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for table_id, tbl in tables.items():
        where = f"table {table_id!r}"
        if not isinstance(tbl, Mapping):
            raise _fail(path, where, "expected a mapping")
        missing = [k for k in _REQUIRED_TABLE_KEYS if k not in tbl]
        if missing:
            raise _fail(path, where, f"missing keys {missing}")
        unknown = sorted(set(tbl) - set(_REQUIRED_TABLE_KEYS) - set(_OPTIONAL_TABLE_KEYS))
        if unknown:
            raise _fail(path, where, f"unknown keys {unknown}")
        substitute = tbl.get("substitute_data")
        if substitute is not None and (not isinstance(substitute, str) or not substitute):
            raise _fail(path, where, f"'substitute_data' must be a non-empty string or absent, got {substitute!r}")
        if tbl["protocol"] not in PROTOCOLS:
            raise _fail(path, where, f"unknown protocol {tbl['protocol']!r} (expected one of {sorted(PROTOCOLS)})")
        if tbl["unit"] != "percent":
            raise _fail(path, where, f"unit must be 'percent', got {tbl['unit']!r}")
        rows = _validate_label_list(path, table_id, "rows", tbl["rows"])
        columns = _validate_label_list(path, table_id, "columns", tbl["columns"])
        cells = tbl["cells"]
        if not isinstance(cells, list) or not cells:
            raise _fail(path, where, "'cells' must be a non-empty list")
        metric_labels = tbl.get("metric_labels") or {}
        if not isinstance(metric_labels, Mapping):
            raise _fail(path, where, "'metric_labels' must be a mapping")

        different_method = tbl.get("different_method") or {}
        if not isinstance(different_method, Mapping):
            raise _fail(path, where, f"'different_method' must map rows to reasons, got {different_method!r}")
        for row, reason in different_method.items():
            if row not in rows:
                raise _fail(path, where, f"'different_method' names unknown row {row!r} (declared rows: {rows})")
            if not isinstance(reason, str) or not reason:
                raise _fail(
                    path, where, f"'different_method' reason of row {row!r} must be a non-empty string, got {reason!r}"
                )

        row_pos = {r: i for i, r in enumerate(rows)}
        col_pos = {c: i for i, c in enumerate(columns)}
        seen: set[tuple[str, str]] = set()
        for i, cell in enumerate(cells):
            if not isinstance(cell, Mapping):
                raise _fail(path, f"{where}, cell #{i}", f"expected a mapping, got {cell!r}")
            cw = _cell_where(cell, table_id, i)
            missing = [k for k in _REQUIRED_CELL_KEYS if k not in cell]
            if missing:
                raise _fail(path, cw, f"missing keys {missing}")
            unknown = sorted(set(cell) - set(_REQUIRED_CELL_KEYS) - set(_OPTIONAL_CELL_KEYS))
            if unknown:
                raise _fail(path, cw, f"unknown keys {unknown}")
            if cell["table"] != table_id:
                raise _fail(path, cw, f"cell says table={cell['table']!r} but is listed under {table_id!r}")
            if cell["row"] not in row_pos:
                raise _fail(path, cw, f"unknown row {cell['row']!r} (declared rows: {rows})")
            if cell["column"] not in col_pos:
                raise _fail(path, cw, f"unknown column {cell['column']!r} (declared columns: {columns})")
            key = (cell["row"], cell["column"])
            if key in seen:
                raise _fail(path, cw, "duplicate cell (same table, row and column given twice)")
            seen.add(key)
            for k in ("dataset", "metric", "loss"):
                if not isinstance(cell[k], str) or not cell[k]:
                    raise _fail(path, cw, f"{k!r} must be a non-empty string, got {cell[k]!r}")
            if cell["backbone"] is not None and (not isinstance(cell["backbone"], str) or not cell["backbone"]):
                raise _fail(path, cw, f"'backbone' must be a non-empty string or null, got {cell['backbone']!r}")
            if not isinstance(cell["is_ours"], bool):
                raise _fail(path, cw, f"'is_ours' must be true/false, got {cell['is_ours']!r}")
            dim = cell.get("embedding_dim")
            if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
                raise _fail(path, cw, f"'embedding_dim' must be a positive integer or absent, got {dim!r}")
            value = cell["value"]
            if not _is_number(value) or math.isnan(value):
                raise _fail(path, cw, f"value must be a number, got {value!r}")
            if not 0 <= value <= 100:
                raise _fail(path, cw, f"value {value!r} outside [0, 100] (unit is percent)")
            records.append(
                {
                    "table": table_id,
                    "row": cell["row"],
                    "column": cell["column"],
                    "dataset": cell["dataset"],
                    "metric": cell["metric"],
                    "backbone": cell["backbone"],
                    "loss": cell["loss"],
                    "embedding_dim": dim,
                    "is_ours": cell["is_ours"],
                    "value": float(value),
                    "row_index": row_pos[cell["row"]],
                    "column_index": col_pos[cell["column"]],
                }
            )
        meta[str(table_id)] = {
            "title": tbl["title"],
            "protocol": tbl["protocol"],
            "training_data": tbl["training_data"],
            "substitute_data": substitute,
            "notes": list(tbl.get("notes") or []),
            "unit": tbl["unit"],
            "metric_labels": dict(metric_labels),
            "rows": list(rows),
            "columns": list(columns),
            "different_method": dict(different_method),
        }
    return source, meta, records


def load_paper_targets(path: Path | None = None) -> pd.DataFrame:
    """Load and validate the published-number file; one DataFrame row per cell.

    ``path`` defaults to the ``paper_targets.yaml`` packaged with
    :mod:`circle_repro.report`.  Raises ``ValueError`` naming the file, the
    cell (table, row, column) and the problem when the file is malformed.
    """
    path = Path(path) if path is not None else _default_path()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    source, meta, records = _parse(path, doc)
    df = pd.DataFrame.from_records(records, columns=list(CELL_COLUMNS))
    df["embedding_dim"] = df["embedding_dim"].astype("Int64")
    df["is_ours"] = df["is_ours"].astype(bool)
    df["value"] = df["value"].astype(float)
    df.attrs["source"] = source
    df.attrs["path"] = str(path)
    df.attrs["tables"] = meta
    return df


def paper_table(table_id: str, targets: pd.DataFrame | None = None) -> pd.DataFrame:
    """The wide table ``table_id`` as printed: rows x columns in paper order.

    Cells the paper prints as "-" are NaN.  ``targets`` defaults to
    :func:`load_paper_targets`'s packaged file.
    """
    if targets is None:
        targets = load_paper_targets()
    sub = targets[targets["table"] == table_id]
    meta = (targets.attrs.get("tables") or {}).get(table_id)
    if meta is not None:
        rows, columns = meta["rows"], meta["columns"]
    elif not sub.empty:
        rows = list(sub.sort_values("row_index")["row"].drop_duplicates())
        columns = list(sub.sort_values("column_index")["column"].drop_duplicates())
    else:
        rows, columns = [], []
    if not rows:
        known = sorted(set(targets["table"]) | set((targets.attrs.get("tables") or {}).keys()))
        raise KeyError(f"unknown table {table_id!r}; known tables: {known}")
    wide = sub.pivot(index="row", columns="column", values="value")
    wide = wide.reindex(index=rows, columns=columns).astype(float)
    wide.index.name = "row"
    wide.columns.name = "column"
    return wide


#: Paper backbone labels -> this repository's backbone names (circle_repro.models); a label not
#: listed here matches no experiment.
REPO_BACKBONES = {
    "ResNet34": "iresnet34",
    "ResNet100": "iresnet100",
    "ResNet50": "resnet50",
    "BN-Inception": "bn_inception",
    "MGN": "mgn",
    "PCB": "pcb",
}

#: Loss types of params.yaml whose paper id differs from the type name.
_PAPER_LOSS_OF_TYPE = {"circle_classifier": "circle", "lifted_structure": "lifted_struct"}

#: Paper metric ids -> metrics.json keys, where not a pattern below.
_REPO_METRIC = {"accuracy": "accuracy", "r1": "R-1", "map": "mAP", "rank1": "rank-1"}


def paper_loss_id(loss_type: str) -> str:
    """The paper's loss id of a params.yaml loss ``type`` (both Circle forms are ``circle``)."""
    return _PAPER_LOSS_OF_TYPE.get(loss_type, loss_type)


def repo_metric_name(paper_metric: str) -> str:
    """The metrics.json key of a paper metric id: ``recall_at_4`` -> ``R@4``, ``tar_far_1e-4`` -> ``TAR@FAR=0.0001``."""
    if match := re.fullmatch(r"recall_at_(\d+)", paper_metric):
        return f"R@{match[1]}"
    if match := re.fullmatch(r"tar_far_(.+)", paper_metric):
        return f"TAR@FAR={float(match[1]):g}"
    try:
        return _REPO_METRIC[paper_metric]
    except KeyError:
        raise KeyError(f"paper metric {paper_metric!r} has no metrics.json name") from None
