"""annotations: archive members, whitespace tables and the class-disjoint split, with every fault named."""

from __future__ import annotations

import pytest

from circle_repro.data.annotations import AnnotationError, class_split, read_table, require


def _table(tmp_path, text: str | bytes):
    path = tmp_path / "list.txt"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_rows_keep_their_line_numbers_and_the_last_field_takes_the_rest(tmp_path):
    path = _table(tmp_path, "id name\n1 a b c\n\n3 d\n")
    assert read_table(path, ("id", "name"), "list.txt", header=True, ints=["id"]) == [
        (2, {"id": 1, "name": "a b c"}),
        (4, {"id": 3, "name": "d"}),
    ]


@pytest.mark.parametrize(
    ("text", "header", "message"),
    [
        ("1\n", False, r"list.txt line 1: expected <id> <name>, got '1'"),
        ("x a\n", False, r"list.txt line 1: field <id> must be an integer, got 'x'"),
        ("1 a\n", True, r"list.txt line 1: expected a header line \(id name\)"),
        ("\n\n", False, r"list.txt: no rows; expected lines of <id> <name>"),
        (b"1 \xff\n", False, r"list.txt: not UTF-8 text"),
    ],
)
def test_a_malformed_table_is_named(tmp_path, text, header, message):
    with pytest.raises(AnnotationError, match=message):
        read_table(_table(tmp_path, text), ("id", "name"), "list.txt", header=header, ints=["id"])


def test_require_names_the_member_and_the_archive(tmp_path):
    (tmp_path / "Set").mkdir()
    assert require(tmp_path, "Set", "Set.tgz") == tmp_path / "Set"
    with pytest.raises(AnnotationError, match=r"Set.tgz: Set/list.txt is missing from the archive"):
        require(tmp_path, "Set/list.txt", "Set.tgz")


def test_class_split_is_class_disjoint():
    assert class_split(1, range(1, 3), range(3, 5), "x") == "train"
    assert class_split(4, range(1, 3), range(3, 5), "x") == "test"
    with pytest.raises(AnnotationError, match=r"list.txt line 2: class 5 is outside 1..4"):
        class_split(5, range(1, 3), range(3, 5), "list.txt line 2")
