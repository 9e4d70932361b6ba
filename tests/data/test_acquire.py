"""acquire: raw files brought from mirrors or URLs, checked once against sources.yaml and stamped; what is missing."""

from __future__ import annotations

import gzip
import hashlib
import os

import pytest

from circle_repro.data.acquire import (
    access_help,
    check_file,
    declared_file,
    first_present,
    is_verified,
    locate,
    mark_verified,
    missing_error,
    obtain,
    obtain_declared,
    stamp_path,
)
from circle_repro.data.download import ChecksumError
from circle_repro.data.sources import Source, SourceFile

DATA = b"archive bytes\n" * 50
CONTENT = b"idx content\n" * 20


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _source(*files: SourceFile, access: str = "manual", substitutes: tuple[str, ...] = ()) -> Source:
    return Source(
        name="fake",
        title="Fake Set",
        access=access,
        licence="MIT",
        tables=(),
        homepage=None,
        files=files,
        instructions="Ask the authors for it.",
        substitutes=substitutes,
    )


ARCHIVE = SourceFile("a.tgz", None, size_bytes=len(DATA), md5=_md5(DATA))
FOLDER = SourceFile("a/", None, optional=True)


def _write(path, data: bytes = DATA):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- stamps and checks ------------------------------------------------------------------------------


def test_a_stamp_holds_while_the_file_is_unchanged(tmp_path):
    path = _write(tmp_path / "a.tgz")
    assert not is_verified(path)
    assert mark_verified(path, {"md5": _md5(DATA)}) == stamp_path(path) == tmp_path / "a.tgz.verified"
    assert is_verified(path)
    path.write_bytes(DATA + b"x")
    assert not is_verified(path)


def test_check_file_stamps_what_it_matched(tmp_path):
    path = _write(tmp_path / "a.tgz")
    assert check_file(path, ARCHIVE) == {"md5": _md5(DATA)}
    assert is_verified(path)


def test_check_file_refuses_a_wrong_size_or_digest_and_writes_no_stamp(tmp_path):
    path = _write(tmp_path / "a.tgz", DATA + b"more")
    with pytest.raises(ChecksumError, match=rf"size in bytes mismatch: expected {len(DATA)}.*replace .*a.tgz"):
        check_file(path, ARCHIVE)
    path.write_bytes(DATA[::-1])  # same size, other bytes
    with pytest.raises(ChecksumError, match=r"a.tgz: md5 mismatch.*replace"):
        check_file(path, ARCHIVE)
    assert not stamp_path(path).exists()


def test_a_recompressed_gz_is_accepted_by_its_content_digest(tmp_path):
    declared = SourceFile("c.gz", None, md5="0" * 32, content_sha256=hashlib.sha256(CONTENT).hexdigest())
    path = _write(tmp_path / "c.gz", gzip.compress(CONTENT, mtime=0))
    assert check_file(path, declared) == {"content_sha256": declared.content_sha256}
    _write(path, gzip.compress(b"other"))
    with pytest.raises(ChecksumError, match="sha256 of the decompressed content mismatch"):
        check_file(path, declared)
    _write(path, b"not gzip at all")
    with pytest.raises(ChecksumError, match="got unreadable gzip data"):
        check_file(path, declared)


def test_a_file_with_nothing_declared_is_not_stamped(tmp_path):
    path = _write(tmp_path / "list.txt")
    assert check_file(path, SourceFile("list.txt", None)) == {}
    assert not stamp_path(path).exists()


# --- locate / obtain --------------------------------------------------------------------------------


def test_a_placed_file_is_checked_once(tmp_path):
    source = _source(ARCHIVE)
    path = _write(tmp_path / "raw" / "a.tgz")
    assert locate(source, tmp_path / "raw", "a.tgz") == path and is_verified(path)
    stamp = stamp_path(path).read_text()
    os.utime(stamp_path(path), ns=(1, 1))
    locate(source, tmp_path / "raw", "a.tgz")
    assert stamp_path(path).read_text() == stamp and stamp_path(path).stat().st_mtime_ns == 1  # not rewritten


def test_a_placed_file_that_fails_its_check_is_kept_and_named(tmp_path):
    path = _write(tmp_path / "raw" / "a.tgz", DATA[::-1])
    with pytest.raises(ChecksumError, match=r"md5 mismatch.*replace .*a.tgz with the original"):
        locate(_source(ARCHIVE), tmp_path / "raw", "a.tgz")
    assert path.is_file()


def test_an_absent_file_comes_from_the_first_mirror_holding_it(tmp_path):
    _write(tmp_path / "second" / "a.tgz")
    mirrors = (None, tmp_path / "first", tmp_path / "second")
    found = obtain(_source(ARCHIVE), tmp_path / "raw", ["a.tgz"], mirrors=mirrors)
    assert found == {"a.tgz": tmp_path / "raw" / "a.tgz"}
    assert found["a.tgz"].read_bytes() == DATA and is_verified(found["a.tgz"])


def test_a_folder_is_copied_from_a_mirror_in_one_piece(tmp_path):
    _write(tmp_path / "mirror" / "a" / "x" / "1.jpg", b"1")
    _write(tmp_path / "mirror" / "a" / "2.jpg", b"2")
    path = locate(_source(FOLDER), tmp_path / "raw", "a/", mirrors=(tmp_path / "mirror",))
    assert path == tmp_path / "raw" / "a" and (path / "x" / "1.jpg").read_bytes() == b"1"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["a"]  # no a.partial left


def test_a_mirror_copy_with_a_wrong_checksum_is_not_kept(tmp_path):
    _write(tmp_path / "mirror" / "a.tgz", DATA[::-1])
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        locate(_source(ARCHIVE), tmp_path / "raw", "a.tgz", mirrors=(tmp_path / "mirror",))
    assert not (tmp_path / "raw" / "a.tgz").exists() and not (tmp_path / "raw" / "a.tgz.part").exists()


def test_a_copy_judged_by_its_content_digest_is_deleted_when_it_fails(tmp_path):
    declared = SourceFile("c.gz", None, md5="0" * 32, content_sha256="f" * 64)
    _write(tmp_path / "mirror" / "c.gz", gzip.compress(CONTENT))
    with pytest.raises(ChecksumError, match=r"decompressed content mismatch.*copy just made was deleted"):
        locate(_source(declared), tmp_path / "raw", "c.gz", mirrors=(tmp_path / "mirror",))
    assert not (tmp_path / "raw" / "c.gz").exists()


def test_a_downloadable_file_comes_from_its_url_unless_a_mirror_is_given(tmp_path):
    url = _write(tmp_path / "server" / "a.tgz").as_uri()  # file:// URLs go through the same fetch path
    source = _source(SourceFile("a.tgz", url, md5=_md5(DATA)), access="download")
    assert locate(source, tmp_path / "raw", "a.tgz").read_bytes() == DATA
    # With a mirror the URL is not used: a mirror without the file leaves it missing.
    assert locate(source, tmp_path / "raw2", "a.tgz", mirrors=(tmp_path / "empty",)) is None


def test_a_base_url_mirror_that_cannot_supply_the_file_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"place .*a.tgz\. Ask the authors.* Mirror: .*no such file"):
        obtain(_source(ARCHIVE), tmp_path / "raw", ["a.tgz"], mirrors=((tmp_path / "empty").as_uri(),))


def test_missing_files_are_named_with_where_to_place_them(tmp_path):
    source = _source(ARCHIVE, FOLDER, substitutes=("Other Set (other)", "a Kaggle copy"))
    with pytest.raises(FileNotFoundError) as err:
        obtain(source, tmp_path / "raw", ["a.tgz", "a/"])
    assert str(err.value) == (
        f"Fake Set (fake): raw data not found; place {tmp_path / 'raw' / 'a.tgz'}, "
        f"{tmp_path / 'raw' / 'a'}/. Ask the authors for it. Substitutes: Other Set (other); "
        "a Kaggle copy."
    )
    assert access_help(_source()) == "Ask the authors for it."
    assert "one of" in str(missing_error(source, tmp_path, ["a.tgz", "a/"], one_of=True))


def test_obtain_declared_needs_every_required_file_or_one_alternative(tmp_path):
    required = _source(ARCHIVE, FOLDER)
    with pytest.raises(FileNotFoundError, match=r"place \S*a.tgz\. "):
        obtain_declared(required, tmp_path / "raw")
    _write(tmp_path / "raw" / "a.tgz")
    assert obtain_declared(required, tmp_path / "raw") == {"a.tgz": tmp_path / "raw" / "a.tgz"}
    (tmp_path / "raw" / "a").mkdir()
    assert set(obtain_declared(required, tmp_path / "raw")) == {"a.tgz", "a/"}

    alternatives = _source(SourceFile("b.zip", None, optional=True), FOLDER)
    with pytest.raises(FileNotFoundError, match=r"place one of \S*b.zip, \S*a/\."):
        obtain_declared(alternatives, tmp_path / "other")


def test_first_present_prefers_the_first_alternative(tmp_path):
    source = _source(SourceFile("a.tgz", None, optional=True), FOLDER)
    _write(tmp_path / "raw" / "a.tgz")
    assert first_present(source, tmp_path / "raw", ["a/", "a.tgz"]) == ("a.tgz", tmp_path / "raw" / "a.tgz")
    (tmp_path / "raw" / "a").mkdir()
    assert first_present(source, tmp_path / "raw", ["a/", "a.tgz"]) == ("a/", tmp_path / "raw" / "a")
    with pytest.raises(FileNotFoundError, match=r"one of \S*empty/a.tgz, \S*empty/a/\."):  # sources.yaml order
        first_present(source, tmp_path / "empty", ["a/", "a.tgz"])


def test_an_undeclared_name_is_refused():
    with pytest.raises(KeyError, match=r"'b.zip' is not declared"):
        declared_file(_source(ARCHIVE), "b.zip")
