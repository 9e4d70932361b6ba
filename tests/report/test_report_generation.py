"""The report's folder is one generation: a failure or a kill at any point leaves the earlier report whole
(figures included) or the new one, never a mix; other files in the folder stay."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml
from synthetic_runs import write_demo_runs

import circle_repro.report.build as report_build
from circle_repro import generations
from circle_repro.cli import main
from circle_repro.config import Study
from circle_repro.report.figures import canvas
from support import REPO_ROOT, fail_on_call, snapshot

OLD = {"generated": "2026-01-01 00:00 UTC", "commit": "0000000"}
NEW = {"generated": "2026-02-02 00:00 UTC", "commit": "1111111"}


@pytest.mark.parametrize(
    ("module", "name", "call"),
    [(canvas, "save_png", 2), (generations, "_carry", 1)],
    ids=["a figure", "carrying a file over"],
)
def test_a_failed_report_leaves_the_earlier_one_whole(tmp_path, monkeypatch, demo_params, metrics_files, module, name,
                                                      call):  # fmt: skip
    out = tmp_path / "site" / "reports"
    report_build.build_report(Study.of(demo_params), metrics_files, out, **OLD)
    (out / "snakemake_report.zip").write_bytes(b"not the report's")
    before = snapshot(out)
    assert any(path.startswith("figures/") for path in before)
    monkeypatch.setattr(module, name, fail_on_call(getattr(module, name), call))
    with pytest.raises(RuntimeError, match="injected failure"):
        report_build.build_report(Study.of(demo_params), metrics_files, out, **NEW)
    assert snapshot(out) == before  # figures included, and no temporary file
    assert sorted(p.name for p in out.parent.iterdir()) == ["reports"]  # no staging folder left


def test_the_report_refuses_a_folder_it_would_replace_with_a_folder_of_someone_elses(tmp_path, monkeypatch, capsys):
    (tmp_path / "reports" / "drafts").mkdir(parents=True)
    (tmp_path / "reports" / "drafts" / "mine.md").write_text("keep")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--params", str(REPO_ROOT / "params.yaml"), "--profile", "demo", "--out", "reports"]) == 2
    message = capsys.readouterr().err
    assert "reports: holds the folder drafts" in message and "output folder of its own" in message
    assert (tmp_path / "reports" / "drafts" / "mine.md").read_text() == "keep"


# A `report` that SIGKILLs itself just before or after call number `call` of `module.name`.
_KILLED_REPORT = textwrap.dedent("""
    import importlib, json, sys
    import yaml
    from circle_repro.config import Study
    from circle_repro.report.build import build_report
    from support import kill_on_call
    spec = json.loads(sys.argv[1])
    kill_on_call(importlib.import_module(spec["module"]), spec["name"], spec["call"], spec["when"])
    with open(spec["params"]) as fh:
        params = yaml.safe_load(fh)
    build_report(Study.of(params), spec["metrics"], spec["out"], **spec["stamp"])
""")
_KILLS = {  # where: (module, function, call number, before or after it, which report is left)
    "first figure": ("circle_repro.report.figures.canvas", "save_png", 1, "before", "old"),
    "third figure written": ("circle_repro.report.figures.canvas", "save_png", 3, "after", "old"),
    "html written": ("circle_repro.report.build", "render_html", 1, "after", "old"),
    "all written": ("circle_repro.report.build", "write_json", 1, "after", "old"),
    "carrying over": ("circle_repro.generations", "_carry", 1, "after", "old"),
    "swapped": ("circle_repro.generations", "_exchange", 1, "after", "new"),
}


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory, demo_params):
    """The demo runs' metrics files, and the earlier report (the retrieval runs only: fewer figures) and the
    new report (every run) they give, each beside a file that is not the report's."""
    root = tmp_path_factory.mktemp("two_reports")
    metrics_files = write_demo_runs(root / "runs", demo_params)
    retrieval = [path for path in metrics_files if "demo_retrieval" in str(path)]
    reports = {"old": root / "old" / "reports", "new": root / "new" / "reports"}
    report_build.build_report(Study.of(demo_params), retrieval, reports["old"], **OLD)
    report_build.build_report(Study.of(demo_params), metrics_files, reports["new"], **NEW)
    for folder in reports.values():
        (folder / "snakemake_report.zip").write_bytes(b"not the report's")
    figures_of = {
        name: {path for path in snapshot(folder) if path.startswith("figures/")} for name, folder in reports.items()
    }
    assert figures_of["new"] > figures_of["old"]
    return metrics_files, reports


@pytest.mark.slow
@pytest.mark.parametrize("where", list(_KILLS))
def test_a_killed_report_leaves_the_old_report_or_the_new_one_whole(tmp_path, demo_params, two_reports, where):
    """SIGKILL at several points of `report`: the folder holds the earlier report, figures included, or
    the new one; the next report cleans up what the kill left beside it."""
    metrics_files, reports = two_reports
    out = tmp_path / "site" / "reports"
    shutil.copytree(reports["old"], out)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(demo_params, sort_keys=False))
    module, name, call, when, left = _KILLS[where]
    spec = {"module": module, "name": name, "call": call, "when": when, "params": str(tmp_path / "params.yaml"),
            "metrics": [str(path) for path in metrics_files], "out": str(out), "stamp": NEW}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", _KILLED_REPORT, json.dumps(spec)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert snapshot(out) == snapshot(reports[left])
    assert (tmp_path / "site" / "reports.staging").is_dir()  # what the kill left: the next report's to clean up
    if where == "swapped":  # the costly check once: the next report removes it
        report_build.build_report(Study.of(demo_params), metrics_files, out, **NEW)
        assert snapshot(out) == snapshot(reports["new"])
        assert sorted(p.name for p in out.parent.iterdir()) == ["reports"]
