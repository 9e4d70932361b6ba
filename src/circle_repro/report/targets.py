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
repository's names through :func:`repo_metric_name`,
:data:`REPO_BACKBONES` and each loss class's own ``paper_loss``
(:func:`circle_repro.losses.registry.paper_loss_id`).
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from circle_repro.schema import check, packaged_schema

__all__ = [
    "CELL_COLUMNS",
    "PROTOCOLS",
    "REPO_BACKBONES",
    "load_paper_targets",
    "paper_table",
    "repo_metric_name",
]

_RESOURCE = "paper_targets.yaml"

SCHEMA_RESOURCE = "paper_targets.schema.yaml"

#: Allowed values of a table's ``protocol``.
PROTOCOLS = frozenset(packaged_schema(__package__, SCHEMA_RESOURCE)["$defs"]["table"]["properties"]["protocol"]["enum"])

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


def _parse(path: Path, doc: Any) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Validate the parsed YAML (its schema, then the rules that join keys); return (source, table
    metadata, flat cell records)."""
    check(doc, packaged_schema(__package__, SCHEMA_RESOURCE), str(path), "paper targets")
    meta: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for table_id, tbl in doc["tables"].items():
        where = f"table {table_id!r}"
        rows, columns = tbl["rows"], tbl["columns"]
        substitute, metric_labels = tbl.get("substitute_data"), tbl.get("metric_labels") or {}
        different_method = tbl.get("different_method") or {}
        for row in different_method:
            if row not in rows:
                raise _fail(path, where, f"'different_method' names unknown row {row!r} (declared rows: {rows})")
        row_pos = {r: i for i, r in enumerate(rows)}
        col_pos = {c: i for i, c in enumerate(columns)}
        seen: set[tuple[str, str]] = set()
        for i, cell in enumerate(tbl["cells"]):
            cw = _cell_where(cell, table_id, i)
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
            value = cell["value"]
            if math.isnan(value):
                raise _fail(path, cw, f"value must be a number, got {value!r}")
            records.append(
                {
                    "table": table_id,
                    "row": cell["row"],
                    "column": cell["column"],
                    "dataset": cell["dataset"],
                    "metric": cell["metric"],
                    "backbone": cell["backbone"],
                    "loss": cell["loss"],
                    "embedding_dim": cell.get("embedding_dim"),
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
    return doc["source"], meta, records


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

#: Paper metric ids -> metrics.json keys, where not a pattern below.
_REPO_METRIC = {"accuracy": "accuracy", "r1": "R-1", "map": "mAP", "rank1": "rank-1"}


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
