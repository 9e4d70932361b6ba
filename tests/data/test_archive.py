import os
import struct
import tarfile
import zipfile

import pytest
from fixtures.formats import GOOD_MEMBERS, build_tar, build_zip, truncate

from circle_repro.data.archive import CorruptArchiveError, UnsafeArchiveError, list_members, safe_extract

GOOD_FILES = {name: data for name, kind, data in GOOD_MEMBERS if kind == "file"}


def assert_nothing_extracted(tmp_path, dest):
    assert not dest.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{dest.name}.")]
    assert leftovers == []
    assert not (tmp_path / "x").exists() and not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("name", ["data.tar", "data.tar.gz", "data.tgz"])
def test_tar_extracts_all_files(tmp_path, name):
    archive = build_tar(tmp_path / name)
    dest = tmp_path / "out"
    files = safe_extract(archive, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in files) == sorted(GOOD_FILES)
    for relative, data in GOOD_FILES.items():
        assert (dest / relative).read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_extracted_modes_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        dest = tmp_path / "out"
        safe_extract(build_tar(tmp_path / "data.tar"), dest)
    finally:
        os.umask(previous)
    assert oct((dest / "top/a.txt").stat().st_mode & 0o777) == oct(0o640)
    assert oct(dest.stat().st_mode & 0o777) == oct(0o750), "the renamed staging folder is not mkdtemp's 0700"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_zip_extracts_all_files(tmp_path):
    archive = build_zip(tmp_path / "data.zip")
    dest = tmp_path / "out"
    files = safe_extract(archive, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in files) == sorted(GOOD_FILES)
    assert (dest / "top/sub/b.bin").read_bytes() == GOOD_FILES["top/sub/b.bin"]


@pytest.mark.parametrize(
    "member, reason",
    [
        (("../x", "file", b"evil"), "'..' escapes"),
        (("top/../../x", "file", b"evil"), "'..' escapes"),
        (("/tmp/escaped", "file", b"evil"), "absolute path"),
        (("top/link", "symlink", "/etc/passwd"), "symbolic link"),
        (("top/rel-link", "symlink", "../../x"), "symbolic link"),
        (("top/hard", "hardlink", "top/a.txt"), "hard link"),
        (("top/fifo", "fifo", b""), "FIFO"),
        (("top/null", "chr", b""), "device file"),
    ],
)
def test_malicious_tar_member_is_refused_and_nothing_extracted(tmp_path, member, reason):
    archive = build_tar(tmp_path / "evil.tar.gz", (member,))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as info:
        safe_extract(archive, dest)
    assert info.value.member == member[0]
    assert "evil.tar.gz" in str(info.value) and repr(member[0]) in str(info.value)
    assert_nothing_extracted(tmp_path, dest)


def test_dotdot_inside_the_destination_is_allowed(tmp_path):
    archive = build_tar(tmp_path / "ok.tar", (("top/sub/../c.txt", "file", b"c"),))
    files = safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/top/c.txt").read_bytes() == b"c"
    assert tmp_path / "out/top/c.txt" in files


@pytest.mark.parametrize("name", ["../x", "../../escaped", "/escaped", "top\\..\\..\\x", "C:/escaped"])
def test_zip_slip_is_refused(tmp_path, name):
    archive = build_zip(tmp_path / "slip.zip", ((name, b"evil"),))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest)
    assert info.value.member == name and "slip.zip" in str(info.value)
    assert_nothing_extracted(tmp_path, dest)


def test_zip_symlink_is_refused(tmp_path):
    archive = build_zip(tmp_path / "link.zip", symlink=("top/passwd", "/etc/passwd"))
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    "name, keep", [("t.tar.gz", 0.5), ("t.tar.gz", -30), ("t.tar", 1536), ("t.tar", 2000), ("t.zip", 0.7)]
)
def test_truncated_archive_is_detected(tmp_path, name, keep):
    archive = build_zip(tmp_path / name) if name.endswith(".zip") else build_tar(tmp_path / name)
    size = archive.stat().st_size
    truncate(archive, size + keep if isinstance(keep, int) and keep < 0 else keep)
    dest = tmp_path / "out"
    with pytest.raises(CorruptArchiveError, match=rf"{name}: (corrupt or truncated|truncated tar)"):
        safe_extract(archive, dest)
    assert_nothing_extracted(tmp_path, dest)


def test_tar_cut_at_a_member_boundary_is_detected(tmp_path):
    archive = build_tar(tmp_path / "t.tar")
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1]
    end_of_last = last.offset_data + ((last.size + 511) // 512) * 512
    truncate(archive, end_of_last)  # a valid prefix: tarfile alone would accept it silently
    with pytest.raises(CorruptArchiveError, match="no end-of-archive marker"):
        safe_extract(archive, tmp_path / "out")


def test_corrupt_zip_member_crc_is_detected(tmp_path):
    archive = build_zip(tmp_path / "crc.zip")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("top/sub/b.bin")
    raw = bytearray(archive.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    data_start = info.header_offset + 30 + name_length + extra_length
    raw[data_start + info.compress_size // 2] ^= 0xFF  # damaged deflate data or a CRC mismatch
    archive.write_bytes(bytes(raw))
    with pytest.raises(CorruptArchiveError, match=r"crc.zip"):
        safe_extract(archive, tmp_path / "out")
    assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_existing_destination_needs_overwrite(tmp_path):
    archive = build_tar(tmp_path / "a.tar")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(FileExistsError):
        safe_extract(archive, dest)
    safe_extract(archive, dest, overwrite=True)
    assert not (dest / "old.txt").exists() and (dest / "top/a.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["a.tar", "out"]


def test_failed_overwrite_keeps_the_old_content(tmp_path):
    archive = build_tar(tmp_path / "evil.tar", (("../x", "file", b"evil"),))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, dest, overwrite=True)
    assert (dest / "old.txt").read_text() == "old"


def test_list_members_checks_without_extracting(tmp_path):
    assert list_members(build_tar(tmp_path / "a.tgz"))[:2] == ["top", "top/a.txt"]
    with pytest.raises(UnsafeArchiveError):
        list_members(build_zip(tmp_path / "b.zip", (("../x", b""),)))


def test_unknown_suffix_is_rejected(tmp_path):
    path = tmp_path / "data.rar"
    path.write_bytes(b"Rar!")
    with pytest.raises(ValueError, match="unknown archive type"):
        safe_extract(path, tmp_path / "out")


def test_tar_backslash_is_a_plain_character_but_cannot_escape(tmp_path):
    safe_extract(build_tar(tmp_path / "a.tar", (("top/we\\ird.txt", "file", b"w"),)), tmp_path / "out")
    assert (tmp_path / "out/top/we\\ird.txt").read_bytes() == b"w"
    with pytest.raises(UnsafeArchiveError, match="escapes"):
        safe_extract(build_tar(tmp_path / "b.tar", (("..\\x", "file", b"w"),)), tmp_path / "out2")
