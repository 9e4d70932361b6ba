"""The report from hand-made metrics files: values, labels, self-contained HTML, long-form results."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from circle_repro.report.build import build_report, published_table
from circle_repro.report.targets import load_paper_targets

def test_report_tables_hold_mean_and_std_in_percent(tmp_path, repo_params, metrics_files):
    outputs = build_report(repo_params, metrics_files, tmp_path / "reports")
    assert [p.name for p in outputs] == ["report.md", "report.html", "results.csv", "metrics.json"]
    markdown = outputs[0].read_text()
    # CircleLoss R@1: mean 91.00, sample std of (90, 92) = 1.41
    assert "| CircleLoss | 91.00 ± 1.41 | 96.00 ± 1.41 | 99.00 ± 0.00 | 100.00 ± 0.00 | 50.00 ± 0.00 | 2 |" in markdown
    assert "| Triplet | 82.00 ± 2.83 |" in markdown
    # one untrained row per seed (runs sharing a seed share initial weights): R@1 of (0.5, 0.6)
    assert "| untrained network | 55.00 ± 7.07 | 60.00 ± 0.00 |" in markdown
    assert "CircleLoss minus the best other loss (Triplet) at R@1: +9.00 points" in markdown
    assert "paper, different data" in markdown
    assert "Not run in this profile: paper Table 1, Table 3, Table 4" in markdown
    assert "| CircleLoss | not run |" in markdown, "an experiment without results keeps its rows"
    assert "mlflow-Triplet-1" in markdown


def test_published_rows_stand_beside_reproduced_ones(tmp_path, repo_params, metrics_files):
    markdown = build_report(repo_params, metrics_files, tmp_path / "r")[0].read_text()
    targets = load_paper_targets()
    circle = targets[(targets["table"] == "table5") & (targets["row"] == "CircleLoss^512")]
    printed = published_table("table5", targets).loc["CircleLoss^512"].tolist()
    assert printed == [f"{v:.1f}" for v in circle.sort_values("column_index")["value"]]
    assert "| CircleLoss^512 | " + " | ".join(printed) + " |" in markdown


def test_html_is_self_contained(tmp_path, repo_params, metrics_files):
    page = build_report(repo_params, metrics_files, tmp_path / "r")[1].read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert '<span class="badge reference">paper, different data</span>' in page


def test_long_results_and_dvc_metrics(tmp_path, repo_params, metrics_files):
    outputs = build_report(repo_params, metrics_files, tmp_path / "r")
    results = pd.read_csv(outputs[2])
    assert len(results) == 4 * 5 + 2 * 5  # 4 trained runs, 2 seeds of initial weights
    assert set(results.columns) >= {"run_id", "metric", "value", "mlflow_run_id", "seed"}
    summary = json.loads(outputs[3].read_text())
    assert summary["demo_retrieval"]["Triplet"]["R@1"] == {"mean": 0.82, "std": pytest.approx(0.028284, abs=1e-6), "n": 2}


def test_broken_and_missing_metrics_files_are_reported_not_fatal(tmp_path, repo_params, metrics_files):
    half_written = metrics_files[0]
    half_written.write_text(half_written.read_text()[:40])
    missing = tmp_path / "runs" / "demo_retrieval" / "Triplet" / "seed9" / "metrics.json"
    no_metrics = tmp_path / "no_metrics.json"
    no_metrics.write_text("{}")
    markdown = build_report(repo_params, [*metrics_files, missing, no_metrics], tmp_path / "r")[0].read_text()
    assert "## Problems" in markdown
    assert f"{half_written}: not a readable metrics.json" in markdown
    assert f"{missing}: not a readable metrics.json" in markdown
    assert f"{no_metrics}: no 'metrics' mapping" in markdown
    # the broken CircleLoss seed drops out of its row, which says so through its seed count
    assert "| CircleLoss | 92.00 ± n/a |" in markdown and "| 1 |" in markdown


def test_markdown_equals_the_golden_file(tmp_path, repo_params, metrics_files, update_golden):
    golden = Path(__file__).parent / "golden" / "report.md"
    markdown = build_report(
        repo_params, metrics_files, tmp_path / "r", generated="2026-01-01 00:00 UTC", commit="0000000"
    )[0].read_text()
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(markdown)
    assert markdown == golden.read_text(), "report.md changed; rerun with --update-golden if intended"
