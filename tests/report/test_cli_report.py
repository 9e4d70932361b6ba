"""`circle-repro report`: the report, results.csv and the dvc metrics file from the runs the params define."""

import shutil

import pandas as pd
from synthetic_runs import write_demo_runs

from circle_repro.cli import main
from support import REPO_ROOT


def test_report_command_writes_results_csv_beside_the_report(tmp_path, monkeypatch, demo_params):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_demo_runs(tmp_path / "runs", demo_params)
    monkeypatch.chdir(tmp_path)  # the default metrics files are runs/<experiment>/<loss>/seed<N>/metrics.json
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
