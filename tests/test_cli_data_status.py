"""`circle-repro data status`: an aligned table of every data set, exit 0, no torch import."""

from __future__ import annotations

import subprocess
import sys

from circle_repro.cli import main
from circle_repro.data.sources import load_sources


def test_status_prints_the_table_and_exits_0(tmp_path, capsys):
    assert main(["data", "status", "--data-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    for column in ("data set", "access", "state", "size", "licence", "tables"):
        assert column in header
    names = [line.split()[0] for line in lines[1:]]
    assert names == list(load_sources())
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "missing" in rows["cub200"] and "table5" in rows["cub200"]
    assert "available (embedded)" in rows["mnist5k"]
    state_col = header.index("state")
    assert all(line[state_col - 2 : state_col] == "  " for line in lines[1:])  # aligned columns


def test_status_shows_a_prepared_set(tmp_path, capsys):
    manifest = tmp_path / "prepared" / "fashion_mnist" / "manifest.parquet"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"PAR1")
    assert main(["data", "status", "--data-root", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fashion_mnist"))
    assert "prepared" in row


def test_a_bad_sources_file_exits_2_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "sources.yaml"
    bad.write_text("x:\n  title: X\n  access: torrent\n  licence: L\n  tables: []\n  homepage: null\n  files: []\n")
    assert main(["data", "status", "--data-root", str(tmp_path), "--sources", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "x.access" in err and "Traceback" not in err


def test_status_command_runs_without_torch(tmp_path):
    code = (
        "import sys; from circle_repro.cli import main; rc = main(['data', 'status', '--data-root', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cub200" in result.stdout
