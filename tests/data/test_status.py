"""data_status / verify_raw: missing -> downloaded -> verified -> prepared, on an empty root and on fixtures."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import time

import pytest
import yaml

from circle_repro.data.acquire import is_verified, mark_verified, stamp_path
from circle_repro.data.download import ChecksumError
from circle_repro.data.sources import load_sources
from circle_repro.data.status import data_status, format_size, format_status_table, verify_raw

PAYLOAD_A = b"fake archive A\n" * 100
PAYLOAD_B = b"fake annotations B\n"
CONTENT_C = b"idx content\n" * 10


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_sources(tmp_path):
    """A sources file declaring one downloadable set (sha256 + md5), one unverifiable manual set,
    one .gz set with a content checksum only, and one embedded set."""
    data = {
        "fake": {
            "title": "Fake",
            "access": "download",
            "licence": "MIT",
            "tables": ["table5"],
            "homepage": None,
            "files": [
                {
                    "name": "a.tgz",
                    "url": "http://example.invalid/a.tgz",
                    "size_bytes": len(PAYLOAD_A),
                    "sha256": _sha256(PAYLOAD_A),
                },
                {"name": "b.mat", "url": "http://example.invalid/b.mat", "md5": hashlib.md5(PAYLOAD_B).hexdigest()},
                {"name": "extra.txt", "url": None, "optional": True},
            ],
        },
        "handmade": {
            "title": "Handmade",
            "access": "manual",
            "licence": "agreement",
            "tables": ["table4"],
            "homepage": None,
            "instructions": "ask the authors; put d/ under data/raw/handmade/",
            "files": [{"name": "d/", "url": None}],
        },
        "gz": {
            "title": "Gz",
            "access": "download",
            "licence": "MIT",
            "tables": [],
            "homepage": None,
            "files": [
                {
                    "name": "c.gz",
                    "url": "http://example.invalid/c.gz",
                    "md5": "0" * 32,
                    "content_sha256": _sha256(CONTENT_C),
                }
            ],
        },
        "emb": {
            "title": "Embedded",
            "access": "embedded",
            "licence": "BSD-3",
            "tables": [],
            "homepage": None,
            "files": [{"name": "x.csv.gz", "url": None}],
        },
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_sources(path)


def _by_name(statuses):
    return {s.name: s for s in statuses}


def test_empty_root_every_real_set_is_missing_or_available(tmp_path):
    statuses = data_status(tmp_path)
    assert [s.name for s in statuses] == list(load_sources())
    for status in statuses:
        expected = "available (embedded)" if status.access == "embedded" else "missing"
        assert status.state == expected, status.name
        assert status.size_bytes == 0 and status.files_present == 0
    by_name = _by_name(statuses)
    assert by_name["mnist5k"].state == "available (embedded)"
    assert by_name["cub200"].tables == ("table5",) and by_name["fashion_mnist"].licence.startswith("MIT")


def test_empty_root_status_is_fast(tmp_path):
    start = time.perf_counter()
    data_status(tmp_path)
    assert time.perf_counter() - start < 0.5


def test_missing_downloaded_verified_prepared(tmp_path, fake_sources):
    root = tmp_path / "data"
    raw = root / "raw" / "fake"
    assert _by_name(data_status(root, fake_sources))["fake"].state == "missing"
    raw.mkdir(parents=True)
    (raw / "a.tgz").write_bytes(PAYLOAD_A)
    status = _by_name(data_status(root, fake_sources))["fake"]
    assert status.state == "missing" and "1 of 2 required" in status.detail
    (raw / "b.mat").write_bytes(PAYLOAD_B)
    status = _by_name(data_status(root, fake_sources))["fake"]
    assert status.state == "downloaded"  # the optional extra.txt is not needed
    assert status.size_bytes == len(PAYLOAD_A) + len(PAYLOAD_B)
    assert verify_raw("fake", root, fake_sources) == {"a.tgz": "verified", "b.mat": "verified", "extra.txt": "missing"}
    assert stamp_path(raw / "a.tgz").is_file() and is_verified(raw / "b.mat")
    assert _by_name(data_status(root, fake_sources))["fake"].state == "verified"
    manifest = root / "prepared" / "fake" / "manifest.parquet"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"PAR1")
    assert _by_name(data_status(root, fake_sources))["fake"].state == "prepared"


def test_a_replaced_file_loses_its_verified_state(tmp_path, fake_sources):
    raw = tmp_path / "raw" / "fake"
    raw.mkdir(parents=True)
    (raw / "a.tgz").write_bytes(PAYLOAD_A)
    (raw / "b.mat").write_bytes(PAYLOAD_B)
    verify_raw("fake", tmp_path, fake_sources)
    (raw / "a.tgz").write_bytes(PAYLOAD_A + b"more")
    os.utime(raw / "a.tgz", ns=(1, 1))
    assert not is_verified(raw / "a.tgz")
    assert _by_name(data_status(tmp_path, fake_sources))["fake"].state == "downloaded"


def test_checksum_mismatch_raises_naming_the_file_and_writes_no_stamp(tmp_path, fake_sources):
    raw = tmp_path / "raw" / "fake"
    raw.mkdir(parents=True)
    (raw / "a.tgz").write_bytes(b"not the archive")
    (raw / "b.mat").write_bytes(PAYLOAD_B)
    with pytest.raises(ChecksumError) as err:
        verify_raw("fake", tmp_path, fake_sources)
    assert err.value.path == raw / "a.tgz" and "a.tgz" in str(err.value)
    assert not stamp_path(raw / "a.tgz").exists()
    assert _by_name(data_status(tmp_path, fake_sources))["fake"].state == "downloaded"


def test_a_stale_stamp_is_removed_when_verification_fails(tmp_path, fake_sources):
    raw = tmp_path / "raw" / "fake"
    raw.mkdir(parents=True)
    (raw / "a.tgz").write_bytes(b"wrong")
    mark_verified(raw / "a.tgz")
    with pytest.raises(ChecksumError):
        verify_raw("fake", tmp_path, fake_sources)
    assert not stamp_path(raw / "a.tgz").exists()


def test_files_without_a_checksum_cannot_be_verified_and_the_status_says_so(tmp_path, fake_sources):
    folder = tmp_path / "raw" / "handmade" / "d"
    folder.mkdir(parents=True)
    (folder / "img.jpg").write_bytes(b"x" * 10)
    assert verify_raw("handmade", tmp_path, fake_sources) == {"d/": "no checksum declared"}
    status = _by_name(data_status(tmp_path, fake_sources))["handmade"]
    assert status.state == "downloaded" and status.unverifiable == ("d/",)
    assert "cannot be verified" in status.detail and "d/" in status.detail
    assert status.size_bytes == 10


def test_gz_accepted_by_content_checksum_when_the_file_digest_differs(tmp_path, fake_sources):
    raw = tmp_path / "raw" / "gz"
    raw.mkdir(parents=True)
    (raw / "c.gz").write_bytes(gzip.compress(CONTENT_C))
    assert verify_raw("gz", tmp_path, fake_sources) == {"c.gz": "verified"}
    assert _by_name(data_status(tmp_path, fake_sources))["gz"].state == "verified"
    (raw / "c.gz").write_bytes(gzip.compress(b"other content"))
    with pytest.raises(ChecksumError, match="decompressed content"):
        verify_raw("gz", tmp_path, fake_sources)


def test_embedded_set_is_prepared_only_with_a_manifest(tmp_path, fake_sources):
    assert _by_name(data_status(tmp_path, fake_sources))["emb"].state == "available (embedded)"
    manifest = tmp_path / "prepared" / "emb" / "manifest.parquet"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(b"PAR1")
    assert _by_name(data_status(tmp_path, fake_sources))["emb"].state == "prepared"


def test_verify_raw_rejects_an_unknown_data_set(tmp_path, fake_sources):
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        verify_raw("nope", tmp_path, fake_sources)


def test_format_size_and_table(tmp_path, fake_sources):
    assert format_size(0) == "0 B" and format_size(1536) == "1.5 KiB" and format_size(3 * 1024**3) == "3.0 GiB"
    lines = format_status_table(data_status(tmp_path, fake_sources)).splitlines()
    assert lines[0].split()[:2] == ["data", "set"]
    assert [line.split()[0] for line in lines[1:]] == ["fake", "handmade", "gz", "emb"]
    assert lines[1].index("download") == lines[0].index("access")


def test_importing_status_does_not_import_torch():
    code = (
        "import sys, circle_repro.data.status; "
        "heavy = [m for m in ('torch', 'mmengine', 'mlflow') if m in sys.modules]; "
        "assert not heavy, heavy; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
