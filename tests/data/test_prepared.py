"""prepared: scratch extraction that never outlives the preparation, images committed, the manifest last."""

from __future__ import annotations

import pytest
from fixtures.formats import make_jpeg
from fixtures.retrieval import pack_tgz

from circle_repro.data.annotations import AnnotationError
from circle_repro.data.manifest import MANIFEST_FILENAME, read_content_hash, read_manifest
from circle_repro.data.prepared import Sample, committed_store, raw_tree, scratch_dir, write_prepared


def _samples(folder, n=3, **columns):
    samples = []
    for i in range(n):
        file = folder / f"{i}.jpg"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(make_jpeg(i))
        samples.append(
            Sample(
                file,
                f"c{i % 2}/{i}.jpg",
                i % 2,
                "train" if i % 2 else "test",
                f"list.txt line {i + 1}",
                {key: value[i] for key, value in columns.items()},
            )
        )
    return samples


def test_scratch_is_removed_and_a_new_out_dir_too_on_failure(tmp_path):
    with scratch_dir(tmp_path / "out") as scratch:
        assert scratch.parent == tmp_path / "out" and scratch.name.startswith(".extract-")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(RuntimeError), scratch_dir(tmp_path / "new") as scratch:
        (scratch / "x").write_text("x")
        raise RuntimeError
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError), scratch_dir(tmp_path / "out"):
        raise RuntimeError
    assert (tmp_path / "out").is_dir()  # it was there before


def test_raw_tree_uses_a_folder_as_it_is_and_extracts_an_archive(tmp_path):
    folder = tmp_path / "raw" / "Set"
    folder.mkdir(parents=True)
    with raw_tree(folder, tmp_path / "out") as tree:
        assert tree == folder
    assert not (tmp_path / "out").exists()
    archive = pack_tgz(tmp_path / "raw" / "Set.tgz", {"Set/list.txt": b"1 a\n"})
    with raw_tree(archive, tmp_path / "out") as tree:
        assert (tree / "Set" / "list.txt").read_bytes() == b"1 a\n"
        assert tree.is_relative_to(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_write_prepared_stores_images_and_writes_the_manifest_last(tmp_path):
    samples = _samples(tmp_path / "raw", camera=[3, 4, 5], role=[None, "query", "gallery"])
    manifest = write_prepared(samples, tmp_path / "out")
    frame = read_manifest(manifest.parent)
    assert list(frame.columns) == ["path", "label", "split", "camera", "role"]
    assert frame["path"].tolist() == ["images/c0/0.jpg", "images/c1/1.jpg", "images/c0/2.jpg"]
    assert frame["label"].dtype == "int64" and frame["camera"].dtype == "int64"
    assert frame["role"].isna().tolist() == [True, False, False]
    assert (tmp_path / "out" / "images" / "c1" / "1.jpg").read_bytes() == make_jpeg(1)
    assert read_content_hash(tmp_path / "out")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: [*s[:2], Sample(s[2].file, "../2.jpg", 0, "test", "list.txt line 3")],
            r"line 3: image path '../2.jpg'",
        ),
        (
            lambda s: [*s, Sample(s[0].file, s[0].relative, 0, "test", "list.txt line 4")],
            r"line 4: image 'c0/0.jpg' is already listed in list.txt line 1",
        ),
        (
            lambda s: [*s, Sample(s[0].file.with_name("gone.jpg"), "x.jpg", 0, "test", "list.txt line 4")],
            r"line 4: names 'x.jpg', which the archive does not contain",
        ),
    ],
)
def test_a_bad_listing_is_refused_before_anything_is_stored(tmp_path, change, message):
    with pytest.raises(AnnotationError, match=message):
        write_prepared(change(_samples(tmp_path / "raw")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_stale_manifest_goes_with_the_old_images_and_not_before(tmp_path):
    out = tmp_path / "out"
    write_prepared(_samples(tmp_path / "raw"), out)
    with pytest.raises(RuntimeError), committed_store(out) as store:
        store.add("new.jpg", make_jpeg(9), "new")
        raise RuntimeError("failed while storing")
    assert len(read_manifest(out)) == 3  # the earlier preparation is whole
    with pytest.raises(ValueError, match="no image could be decoded"), committed_store(out) as store:
        store.add("bad.jpg", b"not a jpeg", "bad")
    assert len(read_manifest(out)) == 3
    with committed_store(out) as store:
        store.add("new.jpg", make_jpeg(9), "new")
        assert (out / MANIFEST_FILENAME).is_file()
    assert not (out / MANIFEST_FILENAME).exists()  # committed: the old manifest named other images
    assert sorted(p.name for p in (out / "images").iterdir()) == ["new.jpg"]
