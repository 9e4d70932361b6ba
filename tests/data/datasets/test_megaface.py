"""MegaFace Challenge 1: insightface's test pack -> probe/distractor manifest, identities and parsed noise lists."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from fixtures.ijbc_megaface import (
    FACESCRUB_NOISES,
    FACESCRUB_PROBES,
    MEGAFACE_DISTRACTORS,
    MEGAFACE_NOISES,
    build_megaface,
)

from circle_repro.data.datasets import megaface
from circle_repro.data.image_store import SKIPPED_FILENAME, SkippedImagesWarning
from circle_repro.data.manifest import MANIFEST_FILENAME, ManifestError, read_manifest
from circle_repro.evaluation.megaface import evaluate
from support import REPO_ROOT

REAL_RAW = REPO_ROOT / "data" / "raw" / "megaface"


def _prepare(tmp_path, **build):
    fixture = build_megaface(tmp_path / "raw", **build)
    return fixture, megaface.prepare(tmp_path / "prepared", tmp_path / "raw").parent


def test_probes_are_queries_with_identity_labels_and_distractors_distinct_negatives(tmp_path):
    fixture, out = _prepare(tmp_path)
    frame = read_manifest(out)
    assert set(frame["split"]) == {"test"}
    probes, distractors = frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]
    assert probes["path"].tolist() == [f"images/facescrub/{p}" for p in FACESCRUB_PROBES]
    assert distractors["path"].tolist() == [f"images/megaface/{d}" for d in MEGAFACE_DISTRACTORS]
    identities = json.loads((out / megaface.IDENTITIES_FILENAME).read_text())
    assert identities == ["Aaron_Eckhart", "Christian_Bale", "Pamela_Anderson"]
    assert [identities[label] for label in probes["label"]] == [p.split("/")[0] for p in FACESCRUB_PROBES]
    assert distractors["label"].tolist() == [-1, -2, -3, -4]
    assert frame["label"].dtype == np.int64
    for row in frame.itertuples():  # stored untouched (PNG probes stay PNG)
        assert (out / row.path).read_bytes() == fixture.images[row.path.removeprefix("images/")]


@pytest.mark.parametrize("tabbed", [False, True], ids=["plain", "tab-separated"])
def test_noise_lists_are_parsed_as_insightface_does(tmp_path, tabbed):
    _, out = _prepare(tmp_path, tabbed_noises=tabbed)
    noises = megaface.read_noises(out)
    facescrub = noises[noises["list"] == "facescrub"]
    assert facescrub["entry"].tolist() == list(FACESCRUB_NOISES)
    assert facescrub["path"].fillna("<null>").tolist() == [
        "images/facescrub/Christian_Bale/Christian_Bale_12006.png",
        "images/facescrub/Pamela_Anderson/Pamela_Anderson_2474.png",
        "<null>",  # Zac_Efron_40.png names no listed probe
    ]
    mega = noises[noises["list"] == "megaface"]
    assert mega["entry"].tolist() == list(MEGAFACE_NOISES)
    assert mega["path"].fillna("<null>").tolist() == ["images/megaface/10/10002399@N02/4343012355_0.jpg", "<null>"]
    frame = read_manifest(out)
    flags = megaface.noise_flags(out, frame["path"])
    assert frame.loc[flags, "path"].tolist() == [
        "images/facescrub/Christian_Bale/Christian_Bale_12006.png",
        "images/facescrub/Pamela_Anderson/Pamela_Anderson_2474.png",
        "images/megaface/10/10002399@N02/4343012355_0.jpg",
    ]


def test_prepared_set_feeds_the_megaface_evaluation(tmp_path):
    _, out = _prepare(tmp_path)
    frame = read_manifest(out)
    flags = megaface.noise_flags(out, frame["path"])
    query = (frame["role"] == "query").to_numpy()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    probe_feats = centres[frame.loc[query, "label"]] + 0.01 * rng.normal(size=(query.sum(), 8))
    result = evaluate(
        probe_feats,
        frame.loc[query, "label"],
        rng.normal(size=((~query).sum(), 8)),
        probe_noisy=flags[query],
        distractor_noisy=flags[~query],
        far=0.1,
    )
    assert result.n_distractors == len(MEGAFACE_DISTRACTORS) and result.rank1 == 1.0


def test_comment_lines_and_the_line_rules_of_remove_noises():
    text = "# header\n#Aaron_Eckhart_1.png\nChristian_Bale_12006.png\n\n  Pamela_Anderson_2474.png  \n"
    assert megaface.parse_facescrub_noises(text) == ["Christian_Bale_12006.png", "Pamela_Anderson_2474.png"]
    text = "# header\n1/2@N00/3_0.jpg\n17\t4/5@N01/6_1.jpg\n"
    assert megaface.parse_megaface_noises(text) == ["1/2@N00/3_0.jpg", "4/5@N01/6_1.jpg"]


@pytest.mark.parametrize(
    ("parser", "line", "message"),
    [
        (megaface.parse_facescrub_noises, "Aaron_Eckhart/Aaron_Eckhart_1.png", "expected an image file name"),
        (megaface.parse_facescrub_noises, "noidentity.png", "expected an image file name"),
        (megaface.parse_megaface_noises, "2@N00/3_0.jpg", "expected a distractor path"),
        (megaface.parse_megaface_noises, "1\t", "expected a distractor path"),
    ],
)
def test_malformed_noise_lines_are_named(parser, line, message):
    with pytest.raises(ValueError, match=rf"noises.txt:2: {message}"):
        parser(f"# header\n{line}\n")


def _write(name, text):
    return lambda raw: (raw / name).write_text(text)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            _write("facescrub_lst", "Aaron_Eckhart/Aaron_Eckhart_136.png\nAaron_Eckhart_201.png\n"),
            ValueError,
            r"facescrub_lst:2: expected a relative image path ending in <identity>/<image>",
        ),
        (_write("megaface_lst", "988/98817479@N00/3354221283_0.jpg\n\n"), ValueError, r"megaface_lst:2: expected"),
        (_write("megaface_lst", "988/98817479@N00/3354221283_0.jpg\n../x/y/z.jpg\n"), ValueError, r"megaface_lst:2"),
        (
            _write("megaface_lst", "988/98817479@N00/3354221283_0.jpg\n988/98817479@N00/3354221283_0.jpg\n"),
            ValueError,
            r"megaface_lst:2: image 988/98817479@N00/3354221283_0.jpg is listed twice \(first at line 1\)",
        ),
        (_write("megaface_lst", ""), ValueError, r"megaface_lst: the list is empty"),
        (
            _write("megaface_noises.txt", "# header\n98817479@N00/3354221283_0.jpg\n"),
            ValueError,
            r"megaface_noises.txt:2: expected a distractor path",
        ),
        (
            _write("facescrub_noises.txt", "Pamela_Anderson_2474.png\nPamela_Anderson_2490.png\n"),
            ValueError,
            r"facescrub_lst:6: every probe of identity 'Pamela_Anderson' is in facescrub_noises.txt",
        ),
        (
            lambda raw: (raw / "megaface_images/7/7033155@N03/2263914862_2.jpg").unlink(),
            FileNotFoundError,
            r"1 listed image\(s\) not found, e.g. \['.*megaface_lst:4: .*2263914862_2.jpg'\]",
        ),
    ],
)
def test_bad_inputs_are_named_and_nothing_is_written(tmp_path, mutate, error, message):
    build_megaface(tmp_path / "raw", mutate=mutate)
    with pytest.raises(error, match=message):
        megaface.prepare(tmp_path / "prepared", tmp_path / "raw")
    assert not (tmp_path / "prepared" / MANIFEST_FILENAME).exists() and not (tmp_path / "prepared" / "images").exists()


def test_missing_pack_names_the_files_the_place_and_the_substitutes(tmp_path):
    build_megaface(tmp_path / "raw", mutate=lambda raw: (raw / "megaface_noises.txt").unlink())
    with pytest.raises(FileNotFoundError) as err:
        megaface.prepare(tmp_path / "prepared", tmp_path / "raw")
    message = str(err.value)
    assert "megaface_noises.txt" in message and str(tmp_path / "raw") in message
    assert "retired" in message and "Substitutes:" in message and "1KBwp0U9oZgZj7SYDXRxUnnH7Lwvd9XMy" in message


def test_undecodable_images_are_skipped_and_counted(tmp_path):
    def corrupt(raw):
        (raw / "megaface_images" / MEGAFACE_DISTRACTORS[1]).write_bytes(b"\xff\xd8 broken")
        (raw / "facescrub_images" / FACESCRUB_PROBES[0]).write_bytes(b"\x89PNG broken")

    build_megaface(tmp_path / "raw", mutate=corrupt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = megaface.prepare(tmp_path / "prepared", tmp_path / "raw").parent
    assert any(issubclass(w.category, SkippedImagesWarning) for w in caught)
    frame = read_manifest(out)
    assert len(frame) == len(FACESCRUB_PROBES) + len(MEGAFACE_DISTRACTORS) - 2
    assert frame.loc[frame["role"] == "gallery", "label"].tolist() == [-1, -3, -4]  # ids follow megaface_lst lines
    skipped = pd.read_json(out / SKIPPED_FILENAME)
    assert (
        skipped["source"].str.contains("facescrub_lst:1").any()
        and skipped["source"].str.contains("megaface_lst:2").any()
    )


def test_noise_reader_names_what_is_missing(tmp_path):
    with pytest.raises(ManifestError, match=r"noises.parquet: not found"):
        megaface.read_noises(tmp_path)


def test_entry_names_the_megaface_protocol():
    assert (megaface.ENTRY.name, megaface.ENTRY.transform) == ("megaface", "face")


@pytest.mark.skipif(
    not (REAL_RAW / megaface.DISTRACTOR_LIST).is_file(),
    reason=f"real MegaFace test pack not under {REAL_RAW} (withdrawn: bring your own copy)",
)
def test_real_pack_has_the_published_counts():
    expected = megaface.SOURCE.expected_counts
    distractors = megaface.read_list(REAL_RAW / megaface.DISTRACTOR_LIST, 3)
    assert len(distractors) == expected["distractor_images"] == 1_000_000
    probes = megaface.read_list(REAL_RAW / megaface.PROBE_LIST, 2)
    megaface.parse_facescrub_noises((REAL_RAW / megaface.PROBE_NOISES).read_text())
    megaface.parse_megaface_noises((REAL_RAW / megaface.DISTRACTOR_NOISES).read_text())
    assert len({p.key.split("/")[0] for p in probes}) >= 80  # ~80 ids / ~3.5K images [unverified]
