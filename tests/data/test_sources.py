"""sources.yaml: every data set declared, facts as transcribed (checked against the data-set notes the file was
transcribed from, where $CIRCLE_REPRO_DATASETS_DOC names them), validation errors clear."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from circle_repro.data.datasets import DATASETS, fashion_mnist
from circle_repro.data.sources import ACCESS_KINDS, SOURCES_PATH, TABLE_IDS, SourcesError, load_sources

DATASETS_DOC_VARIABLE = "CIRCLE_REPRO_DATASETS_DOC"
EXPECTED_NAMES = {
    "cub200",
    "cars196",
    "sop",
    "market1501",
    "msmt17",
    "ms1mv2",
    "ms1mv3",
    "lfw",
    "cfp_fp",
    "agedb_30",
    "ytf",
    "ijbc",
    "megaface",
    "fashion_mnist",
    "mnist5k",
}


@pytest.fixture(scope="module")
def sources():
    return load_sources()


@pytest.fixture(scope="module")
def doc_text():
    doc = os.environ.get(DATASETS_DOC_VARIABLE)
    if not doc or not Path(doc).is_file():
        pytest.skip(
            f"the data-set notes sources.yaml was transcribed from are not in this repository: set "
            f"{DATASETS_DOC_VARIABLE} to their file to check the transcription against them"
        )
    return Path(doc).read_text(encoding="utf-8")


def test_every_data_set_of_the_doc_is_declared(sources):
    assert set(sources) == EXPECTED_NAMES
    assert set(DATASETS) <= set(sources)  # every prepared data set has a source


def test_access_kinds_and_tables_are_from_the_allowed_sets(sources):
    for source in sources.values():
        assert source.access in ACCESS_KINDS
        assert set(source.tables) <= set(TABLE_IDS)


def test_every_paper_table_has_data(sources):
    needed = {table for source in sources.values() for table in source.tables}
    assert needed == set(TABLE_IDS)
    by_table = {t: {n for n, s in sources.items() if t in s.tables} for t in TABLE_IDS}
    assert by_table["table5"] == {"cub200", "cars196", "sop"}
    assert by_table["table4"] == {"market1501", "msmt17"}
    assert {"lfw", "ytf", "cfp_fp"} <= by_table["table2"]
    assert {"megaface"} <= by_table["table1"] and {"ijbc"} <= by_table["table3"]


def test_withdrawn_sets_carry_substitutes_and_manual_sets_instructions(sources):
    withdrawn = {n for n, s in sources.items() if s.access == "withdrawn"}
    assert withdrawn == {"cars196", "megaface"}
    for name in withdrawn:
        assert sources[name].substitutes and sources[name].instructions
    for source in sources.values():
        if source.access == "manual":
            assert source.instructions and "data/raw/" in source.instructions, source.name
        if source.access in ("manual", "withdrawn"):
            assert all(f.url is None for f in source.files), source.name
        if source.access == "download":
            assert all(f.url for f in source.files if not f.optional), source.name
    assert sources["mnist5k"].access == "embedded"


def test_checksums_are_well_formed_hex(sources):
    for source in sources.values():
        for file in source.files:
            for value, length in ((file.md5, 32), (file.sha256, 64), (file.content_sha256, 64)):
                assert value is None or re.fullmatch(rf"[0-9a-f]{{{length}}}", value), (source.name, file.name)


def test_every_declared_checksum_and_size_appears_in_the_doc(sources, doc_text):
    """Nothing invented: each digest and byte count is written in the data-set notes."""
    flat = doc_text.replace(",", "")
    for source in sources.values():
        for file in source.files:
            for digest in (file.md5, file.sha256, file.content_sha256):
                if digest:
                    assert digest in doc_text, (source.name, file.name, digest)
            for size in (file.size_bytes, file.content_bytes):
                if size is not None:
                    assert str(size) in flat, (source.name, file.name, size)


def test_spot_checks_against_the_doc(sources, doc_text):
    cub = sources["cub200"].files[0]
    assert cub.name == "CUB_200_2011.tgz" and cub.size_bytes == 1_150_585_339
    assert f"**1,150,585,339 bytes**, sha256 `{cub.sha256}`" in doc_text
    assert f"**md5 `{cub.md5}`**" in doc_text
    assert cub.url in doc_text
    assert sources["cub200"].expected_counts["train_images"] == 5864 and "**5,864** images" in doc_text
    sop = sources["sop"].files[0]
    assert f"**3,083,860,082 bytes**, sha256 `{sop.sha256}`" in doc_text and sop.url in doc_text
    assert sources["sop"].expected_counts["train_classes"] == 11318
    cars = {f.name: f for f in sources["cars196"].files}
    assert (
        f"**md5 car_ims.tgz `{cars['car_ims.tgz'].md5}`, cars_annos.mat\n  `{cars['cars_annos.mat'].md5}`**" in doc_text
    )
    market = sources["market1501"]
    assert f"**md5 `{market.files[0].md5}`**" in doc_text
    assert market.expected_counts["gallery_images_without_junk"] == 15913
    assert sources["ms1mv2"].expected_counts == {"classes": 85742, "images": 5822653}
    assert "**85,742 ids, 5,822,653 images**" in doc_text
    assert "**93,431 ids, 5,179,510 images**" in doc_text and sources["ms1mv3"].expected_counts["classes"] == 93431
    lfw = {f.name: f for f in sources["lfw"].files}
    assert f"`lfw.tgz` md5 `{lfw['lfw.tgz'].md5}`" in doc_text
    assert sources["ijbc"].expected_counts["genuine_pairs"] == 19557
    assert sources["msmt17"].expected_counts["images"] == 126441


def test_fashion_mnist_checksums_equal_the_doc_and_feed_the_data_module(sources, doc_text):
    files = {f.name: f for f in sources["fashion_mnist"].files}
    assert len(files) == 4
    for name, file in files.items():
        assert f"| {name} | {file.md5} | {file.content_sha256} |" in doc_text
        assert file.sha256 is None  # the doc gives no digest of the .gz bytes beyond the MD5
        assert file.url == f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}"
    assert {name: (f.md5, f.content_sha256) for name, f in files.items()} == fashion_mnist.FILES


def test_sets_without_published_checksums_declare_none(sources):
    for name in ("msmt17", "ms1mv2", "ms1mv3", "cfp_fp", "agedb_30", "ytf", "ijbc", "megaface", "mnist5k"):
        assert not any(f.has_checksum for f in sources[name].files), name


def test_sources_are_frozen(sources):
    with pytest.raises(AttributeError):
        sources["cub200"].access = "manual"  # type: ignore[misc]


def _write(tmp_path, data) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _raw():
    return yaml.safe_load(SOURCES_PATH.read_text())


@pytest.mark.parametrize(
    ("mutate", "key", "message"),
    [
        (lambda d: d["cub200"].pop("licence"), "cub200", "'licence' is a required property"),
        (lambda d: d["cub200"].__setitem__("access", "torrent"), "cub200.access", "is not one of"),
        (lambda d: d["sop"].__setitem__("tables", ["table9"]), "sop.tables[0]", "is not one of"),
        (lambda d: d["cub200"]["files"][0].__setitem__("md5", "abc"), "cub200.files[0].md5", "32 lower-case hex"),
        (
            lambda d: d["cub200"]["files"][0].__setitem__("sha256", "0" * 63),
            "cub200.files[0].sha256",
            "64 lower-case hex",
        ),
        (lambda d: d["megaface"].pop("substitutes"), "megaface", "'substitutes' is a required property"),
        (lambda d: d["ijbc"].pop("instructions"), "ijbc", "'instructions' is a required property"),
        (lambda d: d["ijbc"]["files"][0].__setitem__("url", "http://x/y.tar"), "ijbc.files[0].url", "no direct url"),
        (lambda d: d["cub200"]["files"][0].pop("url"), "cub200.files[0]", "'url' is a required property"),
        (lambda d: d["cub200"].__setitem__("licnce", "x"), "cub200", "'licnce' was unexpected); allowed: access, "),
        (lambda d: d["cub200"]["expected"].__setitem__("images", -1), "cub200.expected.images", "non-negative"),
        (lambda d: d["cub200"]["files"][0].__setitem__("size_bytes", "big"), "cub200.files[0].size_bytes", "integer"),
    ],
)
def test_validation_errors_name_file_data_set_and_key(tmp_path, mutate, key, message):
    data = _raw()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SourcesError) as err:
        load_sources(path)
    text = str(err.value)
    assert str(path) in text and key in text and message in text


def test_missing_sources_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.yaml"):
        load_sources(tmp_path / "nope.yaml")
