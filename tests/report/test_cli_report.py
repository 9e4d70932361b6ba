"""`circle-repro report`: the report, results.csv and the dvc metrics file from the runs the params define."""

import math
import shutil

import pandas as pd
from scipy import stats
from synthetic_runs import write_demo_runs

from circle_repro.cli import main
from circle_repro.report.targets import load_paper_targets
from support import REPO_ROOT


def test_report_command_writes_results_csv_beside_the_report(tmp_path, monkeypatch, demo_params):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_demo_runs(tmp_path / "runs", demo_params)
    monkeypatch.chdir(
        tmp_path
    )  # the default metrics files are runs/<experiment>/<loss>/seed<N>/evaluation/metrics.json
    assert main(["report", "--params", "params.yaml", "--profile", "demo", "--out", "reports"]) == 0
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "figures", "metrics.json", "report.html", "report.md", "results.csv",
    ]  # fmt: skip
    markdown = (tmp_path / "reports" / "report.md").read_text()
    # the params' store (sqlite:///mlflow.db beside params.yaml) does not exist here: the files stand in
    assert f"MLflow store sqlite:///{tmp_path / 'mlflow.db'} not found" in markdown
    assert "Data sets here: " in markdown, "the data root (default: data/) is consulted"
    cells = pd.read_csv(tmp_path / "reports" / "results.csv")
    assert cells.loc[cells["kind"] == "demo", "n"].eq(3).all()
    assert not (tmp_path / "mlflow.db").exists()


def test_summary_command_prints_the_headline_results_and_where_the_report_is(
    tmp_path, monkeypatch, demo_params, capsys
):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_demo_runs(tmp_path / "runs", demo_params)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--params", "params.yaml", "--profile", "demo", "--out", "reports"]) == 0
    capsys.readouterr()
    assert main(["summary", "--reports", "reports"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Report: {tmp_path / 'reports' / 'report.html'} (also report.md, results.csv beside it)"
    # R@1 over seeds: CircleLoss 90, 92, 94; Triplet 80, 84, 82; untrained 50, 60, 70 (synthetic_runs); best first
    t = stats.t.ppf(0.975, 2)
    assert lines[1] == (
        f"  demo_retrieval (demo version of Table 5), R@1: CircleLoss 92.00 ± {t * 2 / math.sqrt(3):.2f} (n=3), "
        f"Triplet 82.00 ± {t * 2 / math.sqrt(3):.2f} (n=3), untrained network 60.00 ± {t * 10 / math.sqrt(3):.2f} (n=3)"
    )
    assert lines[2].startswith("  demo_verification (demo version of Table 2), accuracy: CircleLoss 87.00 ± ")
    assert lines[3] == "  demo_sensitivity (sensitivity, Fig. 3): 12 of 12 points have results"
    targets = load_paper_targets()
    assert lines[4:] == [
        f"  Paper Table {table.removeprefix('table')}: {(targets['table'] == table).sum()} not run"
        for table in targets.attrs["tables"]
    ]


def test_summary_of_a_folder_without_a_report_exits_2_naming_the_fix(tmp_path, capsys):
    assert main(["summary", "--reports", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert "nowhere/results.csv: no report there" in error and "circle-repro report --out" in error
