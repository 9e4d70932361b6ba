"""Tests for circle_repro.report.targets and the packaged paper_targets.yaml.

The numbers below are test fixtures read from the paper's Tables 1-5 (arXiv v2); the package
itself only holds them in paper_targets.yaml.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from circle_repro.losses import LOSSES
from circle_repro.losses.registry import paper_loss_id
from circle_repro.report.targets import (
    CELL_COLUMNS,
    REPO_BACKBONES,
    load_paper_targets,
    paper_table,
    repo_metric_name,
)


@pytest.fixture(scope="module")
def targets() -> pd.DataFrame:
    return load_paper_targets()


@pytest.fixture(scope="module")
def yaml_doc(targets: pd.DataFrame) -> dict:
    return yaml.safe_load(Path(targets.attrs["path"]).read_text(encoding="utf-8"))


def value(df: pd.DataFrame, table: str, row: str, column: str) -> float:
    hit = df[(df["table"] == table) & (df["row"] == row) & (df["column"] == column)]
    assert len(hit) == 1, (table, row, column, len(hit))
    return float(hit["value"].iloc[0])


# --------------------------------------------------------------------- loading


def test_default_path_is_packaged_yaml(targets):
    path = Path(targets.attrs["path"])
    assert path.name == "paper_targets.yaml"
    assert path.parent.name == "report"
    assert targets.attrs["source"].startswith("Sun et al., Circle Loss, CVPR 2020, arXiv 2002.10857v2")


def test_long_format_columns_and_dtypes(targets):
    assert tuple(targets.columns) == CELL_COLUMNS
    assert targets["value"].dtype == float
    assert targets["is_ours"].dtype == bool
    assert str(targets["embedding_dim"].dtype) == "Int64"
    assert targets["value"].between(0, 100).all()
    assert not targets.duplicated(["table", "row", "column"]).any()


def test_explicit_path_equals_default(targets):
    again = load_paper_targets(Path(targets.attrs["path"]))
    pd.testing.assert_frame_equal(again, targets)


# ---------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("table", "n_rows", "n_cols", "n_cells"),
    [
        ("table1", 5, 4, 20),
        ("table2", 5, 3, 15),
        ("table3", 6, 3, 18),
        ("table4", 7, 4, 26),
        ("table5", 7, 12, 84),
    ],
)
def test_cell_counts(targets, table, n_rows, n_cols, n_cells):
    meta = targets.attrs["tables"][table]
    assert len(meta["rows"]) == n_rows
    assert len(meta["columns"]) == n_cols
    assert (targets["table"] == table).sum() == n_cells


def test_total_cells_and_tables(targets):
    assert sorted(targets.attrs["tables"]) == ["table1", "table2", "table3", "table4", "table5"]
    assert len(targets) == 20 + 15 + 18 + 26 + 84


def test_table4_dash_cells_absent(targets):
    t4 = targets[targets["table"] == "table4"]
    mgn = t4[t4["row"] == "MGN (Softmax+Triplet)"]
    assert sorted(mgn["column"]) == ["Market-1501 R-1", "Market-1501 mAP"]
    assert "MGN (Softmax+Triplet)" in targets.attrs["tables"]["table4"]["rows"]
    # every other row of Table 4 is complete
    others = t4[t4["row"] != "MGN (Softmax+Triplet)"]
    assert others.groupby("row").size().eq(4).all()


# ----------------------------------------------------------------- metadata


def test_table_metadata(targets):
    tables = targets.attrs["tables"]
    assert {t: m["protocol"] for t, m in tables.items()} == {
        "table1": "megaface",
        "table2": "verification_pairs",
        "table3": "ijb",
        "table4": "reid",
        "table5": "retrieval",
    }
    for tid, meta in tables.items():
        assert meta["unit"] == "percent", tid
        assert meta["title"], tid
        assert meta["training_data"], tid
        # every metric used in the table has a human label
        used = set(targets.loc[targets["table"] == tid, "metric"])
        assert used <= set(meta["metric_labels"]), (tid, used - set(meta["metric_labels"]))
    for tid in ("table1", "table2", "table3"):
        assert "3.6M" in tables[tid]["training_data"]
        assert any("MS1MV2" in n for n in tables[tid]["notes"]), tid


def test_cell_id_vocabulary(targets):
    assert set(targets["dataset"]) == {
        "megaface",
        "lfw",
        "ytf",
        "cfp_fp",
        "ijbc",
        "market1501",
        "msmt17",
        "cub200",
        "cars196",
        "sop",
    }
    assert set(targets["loss"]) == {
        "softmax",
        "normface",
        "am_softmax",
        "arcface",
        "circle",
        "pcb_softmax",
        "mgn_softmax_triplet",
        "jdgl",
        "lifted_struct",
        "hdc",
        "htl",
        "abier",
        "abe",
        "multi_similarity",
    }
    ident = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
    for col in ("dataset", "metric", "loss"):
        bad = [v for v in targets[col].unique() if not ident.match(v)]
        assert not bad, (col, bad)
    assert set(targets.loc[targets["table"] == "table1", "metric"]) == {"rank1", "tar_far_1e-6"}
    assert set(targets.loc[targets["table"] == "table4", "metric"]) == {"r1", "map"}


def test_is_ours_marks_exactly_the_circle_rows(targets):
    assert (targets["is_ours"] == (targets["loss"] == "circle")).all()
    ours_rows = set(targets.loc[targets["is_ours"], "row"])
    assert all("CircleLoss" in r for r in ours_rows)


def test_embedding_dim_only_in_table5(targets):
    t5 = targets[targets["table"] == "table5"]
    assert t5["embedding_dim"].notna().all()
    assert targets.loc[targets["table"] != "table5", "embedding_dim"].isna().all()
    dims = t5.groupby("row")["embedding_dim"].first().to_dict()
    assert dims["LiftedStruct^64"] == 64
    assert dims["HDC^384"] == 384
    assert dims["CircleLoss^512"] == 512
    # the superscript in the row label and embedding_dim agree
    for row, dim in dims.items():
        assert row.endswith(f"^{dim}")


def test_backbones(targets):
    t1 = targets[targets["table"] == "table1"]
    assert set(t1.loc[t1["column"].str.endswith("R34"), "backbone"]) == {"ResNet34"}
    assert set(t1.loc[t1["column"].str.endswith("R100"), "backbone"]) == {"ResNet100"}
    assert set(targets.loc[targets["table"] == "table2", "backbone"]) == {"ResNet34"}
    t3 = targets[targets["table"] == "table3"]
    assert (t3["row"].str.split(",").str[0] == t3["backbone"]).all()


# ---------------------------------------------------------------- spot checks


@pytest.mark.parametrize(
    ("table", "row", "column", "expected"),
    [
        ("table1", "Softmax", "Rank 1 R34", 92.36),
        ("table1", "CircleLoss (ours)", "Veri. R100", 98.73),
        ("table2", "CircleLoss (ours)", "LFW", 99.73),
        ("table2", "CircleLoss (ours)", "CFP-FP", 96.02),
        ("table3", "ResNet100, CircleLoss (ours)", "1e-3", 96.29),
        ("table3", "ResNet100, CircleLoss (ours)", "1e-4", 93.95),
        ("table3", "ResNet100, CircleLoss (ours)", "1e-5", 89.60),
        ("table3", "ResNet100, ArcFace", "1e-4", 93.25),
        ("table3", "ResNet100, ArcFace", "1e-5", 89.10),
        ("table4", "MGN + CircleLoss (ours)", "Market-1501 R-1", 96.1),
        ("table4", "MGN + CircleLoss (ours)", "Market-1501 mAP", 87.4),
        ("table4", "ResNet50 + CircleLoss (ours)", "Market-1501 R-1", 94.2),
        ("table4", "ResNet50 + CircleLoss (ours)", "Market-1501 mAP", 84.9),
        ("table4", "MGN + CircleLoss (ours)", "MSMT17 R-1", 76.9),
        ("table4", "MGN + CircleLoss (ours)", "MSMT17 mAP", 52.1),
        ("table4", "ResNet50 + CircleLoss (ours)", "MSMT17 R-1", 76.3),
        ("table4", "ResNet50 + CircleLoss (ours)", "MSMT17 mAP", 50.2),
        ("table5", "CircleLoss^512", "CUB R@1", 66.7),
        ("table5", "CircleLoss^512", "Cars R@1", 83.4),
        ("table5", "CircleLoss^512", "SOP R@1", 78.3),
        ("table5", "CircleLoss^512", "SOP R@1000", 98.6),
        ("table5", "LiftedStruct^64", "CUB R@1", 43.6),
    ],
)
def test_spot_values(targets, table, row, column, expected):
    assert value(targets, table, row, column) == pytest.approx(expected, abs=1e-9)


def test_spot_cell_metadata(targets):
    cell = targets[
        (targets["table"] == "table5") & (targets["row"] == "CircleLoss^512") & (targets["column"] == "SOP R@100")
    ].iloc[0]
    assert cell["dataset"] == "sop"
    assert cell["metric"] == "recall_at_100"
    assert cell["loss"] == "circle"
    assert cell["backbone"] == "BN-Inception"
    assert bool(cell["is_ours"]) is True
    cell = targets[
        (targets["table"] == "table3") & (targets["row"] == "ResNet34, ArcFace") & (targets["column"] == "1e-5")
    ].iloc[0]
    assert (cell["dataset"], cell["metric"], cell["backbone"], cell["loss"]) == (
        "ijbc",
        "tar_far_1e-5",
        "ResNet34",
        "arcface",
    )


def test_abier_abe_identical_cub_r2_r4_r8_as_printed(targets):
    for col in ("CUB R@2", "CUB R@4", "CUB R@8"):
        assert value(targets, "table5", "ABIER^512", col) == value(targets, "table5", "ABE^512", col)
    assert [value(targets, "table5", "ABE^512", c) for c in ("CUB R@2", "CUB R@4", "CUB R@8")] == [71.5, 79.8, 87.4]
    # ... but their R@1 differ
    assert value(targets, "table5", "ABIER^512", "CUB R@1") != value(targets, "table5", "ABE^512", "CUB R@1")


def test_text_vs_table_deltas_follow_the_table(targets):
    """The text's ArcFace-vs-AM CFP-FP +0.07 and Circle-vs-ArcFace YTF +0.06 are not what the table says."""
    d_cfp = value(targets, "table2", "ArcFace", "CFP-FP") - value(targets, "table2", "AM-Softmax", "CFP-FP")
    d_ytf = value(targets, "table2", "CircleLoss (ours)", "YTF") - value(targets, "table2", "ArcFace", "YTF")
    assert d_cfp == pytest.approx(0.06, abs=1e-6)
    assert d_ytf == pytest.approx(0.04, abs=1e-6)
    d_ijbc = value(targets, "table3", "ResNet34, CircleLoss (ours)", "1e-4") - value(
        targets, "table3", "ResNet34, AM-Softmax", "1e-4"
    )
    assert d_ijbc == pytest.approx(1.30, abs=1e-6)


# ------------------------------------------------------------------ paper_table


@pytest.mark.parametrize(
    ("table", "shape"),
    [("table1", (5, 4)), ("table2", (5, 3)), ("table3", (6, 3)), ("table4", (7, 4)), ("table5", (7, 12))],
)
def test_paper_table_shape_and_order(targets, table, shape):
    wide = paper_table(table, targets)
    meta = targets.attrs["tables"][table]
    assert wide.shape == shape
    assert list(wide.index) == meta["rows"]
    assert list(wide.columns) == meta["columns"]
    assert all(str(dt) == "float64" for dt in wide.dtypes)


def test_paper_table_order_literal(targets):
    t1 = paper_table("table1", targets)
    assert list(t1.index) == ["Softmax", "NormFace", "AM-Softmax", "ArcFace", "CircleLoss (ours)"]
    assert list(t1.columns) == ["Rank 1 R34", "Rank 1 R100", "Veri. R34", "Veri. R100"]
    t5 = paper_table("table5", targets)
    assert list(t5.columns[:5]) == ["CUB R@1", "CUB R@2", "CUB R@4", "CUB R@8", "Cars R@1"]
    assert list(t5.columns[-4:]) == ["SOP R@1", "SOP R@10", "SOP R@100", "SOP R@1000"]
    assert t5.index[-1] == "CircleLoss^512"
    assert t5.loc["CircleLoss^512", "CUB R@1"] == 66.7


def test_paper_table_nan_for_dash_cells(targets):
    t4 = paper_table("table4", targets)
    assert math.isnan(t4.loc["MGN (Softmax+Triplet)", "MSMT17 R-1"])
    assert math.isnan(t4.loc["MGN (Softmax+Triplet)", "MSMT17 mAP"])
    assert t4.isna().sum().sum() == 2
    assert t4.loc["MGN (Softmax+Triplet)", "Market-1501 R-1"] == 95.7
    for tid in ("table1", "table2", "table3", "table5"):
        assert not paper_table(tid, targets).isna().any().any(), tid


def test_paper_table_default_targets():
    assert paper_table("table2").loc["CircleLoss (ours)", "LFW"] == 99.73


def test_paper_table_without_attrs_uses_indices(targets):
    bare = targets.copy()
    bare.attrs = {}
    t3 = paper_table("table3", bare)
    pd.testing.assert_frame_equal(t3, paper_table("table3", targets))


def test_paper_table_unknown_table(targets):
    with pytest.raises(KeyError, match="table9"):
        paper_table("table9", targets)


# ------------------------------------------------------------------ validation


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "broken_targets.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def _copy(yaml_doc: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(yaml_doc))


def test_roundtrip_copy_loads(tmp_path, yaml_doc, targets):
    df = load_paper_targets(_write(tmp_path, _copy(yaml_doc)))
    pd.testing.assert_frame_equal(df, targets)
    assert df.attrs["tables"] == targets.attrs["tables"]


def test_duplicate_cell_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    cells = doc["tables"]["table2"]["cells"]
    dup = dict(cells[0])
    cells.append(dup)
    p = _write(tmp_path, doc)
    with pytest.raises(ValueError) as exc:
        load_paper_targets(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "duplicate" in msg
    assert "'table2'" in msg and f"{dup['row']!r}" in msg and f"{dup['column']!r}" in msg


def test_unknown_column_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    doc["tables"]["table5"]["cells"][3]["column"] = "CUB R@16"
    p = _write(tmp_path, doc)
    with pytest.raises(ValueError) as exc:
        load_paper_targets(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "unknown column" in msg
    assert "'table5'" in msg and "'LiftedStruct^64'" in msg and "'CUB R@16'" in msg


def test_unknown_row_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    doc["tables"]["table1"]["cells"][0]["row"] = "CosFace"
    p = _write(tmp_path, doc)
    with pytest.raises(ValueError, match=r"unknown row 'CosFace'") as exc:
        load_paper_targets(p)
    assert "'table1'" in str(exc.value) and "'Rank 1 R34'" in str(exc.value)


def test_value_out_of_range_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    cell = doc["tables"]["table4"]["cells"][0]
    cell["value"] = 150
    p = _write(tmp_path, doc)
    with pytest.raises(ValueError) as exc:
        load_paper_targets(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "tables.table4.cells[0].value: 150 is greater than the maximum of 100; allowed: <= 100" in msg


@pytest.mark.parametrize("bad", ["92.36", None, True, float("nan")])
def test_non_numeric_value_rejected(tmp_path, yaml_doc, bad):
    doc = _copy(yaml_doc)
    doc["tables"]["table1"]["cells"][0]["value"] = bad
    problem = r"tables\.table1\.cells\[0\]\.value: .* is not of type 'number'"
    if isinstance(bad, float):  # NaN is a float: the code refuses it after the schema
        problem = r"table='table1', row='Softmax', column='Rank 1 R34'.*value must be a number"
    with pytest.raises(ValueError, match=problem):
        load_paper_targets(_write(tmp_path, doc))


def test_cell_under_wrong_table_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    doc["tables"]["table2"]["cells"][0]["table"] = "table1"
    with pytest.raises(ValueError, match=r"listed under 'table2'"):
        load_paper_targets(_write(tmp_path, doc))


def test_bad_protocol_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    doc["tables"]["table3"]["protocol"] = "ijb-c"
    with pytest.raises(
        ValueError, match=r"tables\.table3\.protocol: 'ijb-c' is not one of \['megaface', 'verification_pairs', 'ijb'"
    ):
        load_paper_targets(_write(tmp_path, doc))


def test_unknown_table_key_rejected(tmp_path, yaml_doc):
    doc = _copy(yaml_doc)
    doc["tables"]["table5"]["substitute"] = "typo of substitute_data"
    with pytest.raises(ValueError, match=r"tables\.table5: .*'substitute' was unexpected\); allowed: cells, columns, "):
        load_paper_targets(_write(tmp_path, doc))


# ------------------------------------------------- substitute data, different method, vocabulary


def test_only_the_original_lifted_structure_row_is_a_different_method(targets):
    marked = {
        tid: meta["different_method"] for tid, meta in targets.attrs["tables"].items() if meta["different_method"]
    }
    assert list(marked) == ["table5"] and list(marked["table5"]) == ["LiftedStruct^64"]
    assert "original lifted structure" in marked["table5"]["LiftedStruct^64"]


@pytest.mark.parametrize(
    ("different_method", "message"),
    [
        ({"Lifted^64": "x"}, "unknown row 'Lifted\\^64'"),
        ({"HDC^384": ""}, "non-empty string"),
        (["HDC^384"], "tables.table5.different_method: .* is not of type 'object'"),
    ],
)
def test_bad_different_method_rejected(tmp_path, yaml_doc, different_method, message):
    doc = _copy(yaml_doc)
    doc["tables"]["table5"]["different_method"] = different_method
    with pytest.raises(ValueError, match=message):
        load_paper_targets(_write(tmp_path, doc))


def test_face_tables_are_marked_substitute_data(targets):
    tables = targets.attrs["tables"]
    for tid in ("table1", "table2", "table3"):
        assert "never released" in tables[tid]["substitute_data"] and "MS1MV2" in tables[tid]["substitute_data"]
    assert tables["table4"]["substitute_data"] is None and tables["table5"]["substitute_data"] is None


@pytest.mark.parametrize(
    ("paper", "repo"),
    [("recall_at_1", "R@1"), ("recall_at_1000", "R@1000"), ("accuracy", "accuracy"),
     ("tar_far_1e-3", "TAR@FAR=0.001"), ("tar_far_1e-4", "TAR@FAR=0.0001"), ("tar_far_1e-6", "TAR@FAR=1e-06"),
     ("r1", "R-1"), ("map", "mAP"), ("rank1", "rank-1")],
)  # fmt: skip
def test_repo_metric_names(paper, repo):
    assert repo_metric_name(paper) == repo


def test_every_paper_metric_has_a_repo_name_and_loss_ids_map(targets):
    assert all(repo_metric_name(metric) for metric in targets["metric"].unique())
    assert f"TAR@FAR={0.001:g}" == repo_metric_name("tar_far_1e-3"), "evaluate names TAR@FAR with :g"
    assert [paper_loss_id(t) for t in ("circle", "circle_classifier", "lifted_structure", "arcface")] == [
        "circle", "circle", "lifted_struct", "arcface",
    ]  # fmt: skip
    assert set(REPO_BACKBONES) >= set(targets["backbone"].dropna())


def test_every_paper_loss_row_names_a_loss_some_class_declares(targets):
    declared = {paper_loss_id(name) for name in LOSSES}
    not_implemented = {"abe", "abier", "hdc", "htl", "jdgl", "mgn_softmax_triplet", "pcb_softmax"}
    assert set(targets["loss"].dropna()) - declared == not_implemented
