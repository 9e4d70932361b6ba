"""`circle-repro data info [NAME]`: where a data set's files go, from sources.yaml; an unknown name exits 2."""

from __future__ import annotations

import pytest

from circle_repro.cli import main
from circle_repro.data.sources import load_sources

SMALL_SOURCES = """\
tiny:
  title: Tiny Set
  access: download
  licence: CC0
  tables: [table5]
  homepage: null
  files:
    - {name: a.tgz, url: "https://example.org/a.tgz", size_bytes: 1536, md5: 0123456789abcdef0123456789abcdef}
    - {name: b.txt, url: null, size_bytes: 512, optional: true}
    - {name: c.zip, url: "https://example.org/c.zip", size_bytes: 3221225472}
hand:
  title: Hand Placed
  access: manual
  licence: research only
  tables: []
  homepage: https://example.org/hand
  files:
    - {name: hand.zip, url: null}
  instructions: Ask the authors for hand.zip and put it in the raw folder.
"""


@pytest.fixture
def small_sources(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(SMALL_SOURCES)
    return path


def _info(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "info", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_download_set_lists_each_file_with_size_checksum_and_url(small_sources, capsys):
    code, out, _ = _info(capsys, "tiny", "--sources", str(small_sources))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "tiny: Tiny Set"
    assert "files, under data/raw/tiny/:" in lines
    assert "  a.tgz  (required; 1.5 KiB; md5 0123456789abcdef0123456789abcdef; from https://example.org/a.tgz)" in lines
    assert "  b.txt  (optional; 512 B; no checksum published; placed by hand)" in lines
    assert "  c.zip  (required; 3.0 GiB; no checksum published; from https://example.org/c.zip)" in lines
    assert "obtain: `circle-repro data fetch tiny` downloads and verifies the files" in lines
    assert lines[-1] == "prepare: circle-repro data prepare tiny --out data/prepared/tiny  (reads data/raw/tiny/)"


def test_a_manual_set_prints_its_placement_instructions(small_sources, capsys):
    code, out, _ = _info(capsys, "hand", "--sources", str(small_sources))
    assert code == 0
    assert "  hand.zip  (required; size not published; no checksum published; placed by hand)" in out
    assert "homepage: https://example.org/hand" in out and "tables: none" in out
    assert "how:\n  Ask the authors for hand.zip and put it in the raw folder." in out
    assert "data fetch" not in out


def test_the_real_sources_file_describes_cub200_and_market1501(capsys):
    sources = load_sources()
    code, out, _ = _info(capsys, "cub200")
    assert code == 0
    archive = sources["cub200"].files[0]
    assert f"  {archive.name}  (required; 1.1 GiB; sha256 {archive.sha256}; from {archive.url})" in out
    code, out, _ = _info(capsys, "MARKET1501")
    assert code == 0 and out.startswith("market1501: Market-1501\n")
    assert " ".join(sources["market1501"].instructions.split()) in " ".join(out.split())


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("market", "market1501"), ("cub", "cub200"), ("cars", "cars196"), ("Stanford Online Product", "sop")],
)
def test_an_unknown_name_exits_2_suggesting_the_nearest(name, suggested, capsys):
    code, out, err = _info(capsys, name)
    assert code == 2 and out == ""
    assert f"unknown data set {name!r}; did you mean {suggested}" in err
    assert "Traceback" not in err


def test_a_name_near_nothing_lists_every_data_set(capsys):
    code, _, err = _info(capsys, "xyzzy")
    assert code == 2
    assert f"known data sets: {', '.join(load_sources())}" in err


def test_without_a_name_it_prints_the_table_of_every_data_set(small_sources, capsys):
    code, out, _ = _info(capsys, "--sources", str(small_sources))
    assert code == 0
    assert out.splitlines() == [
        "| data set | access | paper tables | what goes in `data/raw/<data set>/` |",
        "|---|---|---|---|",
        "| `tiny` Tiny Set | download | 5 | `a.tgz`, `c.zip` (`data fetch` downloads) |",
        "| `hand` Hand Placed | manual | — | `hand.zip` |",
    ]
