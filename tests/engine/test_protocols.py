"""Every evaluation protocol end to end on a tiny prepared data set, against the evaluation library.

Each data set is built by its fixture builder and prepared by its own preparer; the model is a
randomly initialised small CNN on 3 channels. A protocol's results must equal the library functions
called directly on the same features (the reference), flip must mean what it is defined to mean,
and bad settings must fail with errors that name the setting.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures.face import build_youtube_faces
from fixtures.formats import build_verification_bin
from fixtures.ijbc_megaface import build_ijbc, build_megaface
from fixtures.reid import build_market1501
from fixtures.retrieval import build_cub, cub_members
from PIL import Image

from circle_repro.data.datasets import cub200, ijbc, market1501, megaface, ytf
from circle_repro.data.datasets.verification_pack import LFW
from circle_repro.data.manifest import ManifestError
from circle_repro.data.pairs import read_pairs, write_pairs
from circle_repro.data.transforms import IMAGE_MODES, build_transform
from circle_repro.engine import evaluate as evaluate_module
from circle_repro.engine.evaluate import evaluate_run, model_embedder
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.protocols import PROTOCOLS, ProtocolResult, TestSet, get_protocol, unit
from circle_repro.evaluation import ijb as ijb_eval
from circle_repro.evaluation import megaface as megaface_eval
from circle_repro.evaluation import reid as reid_eval
from circle_repro.evaluation.reranking import Reranking
from circle_repro.evaluation.retrieval import retrieval_metrics
from circle_repro.evaluation.verification import flip_sum_embeddings, kfold_accuracy, tar_at_far
from circle_repro.layout import (
    INITIAL_WEIGHTS_FILENAME,
    SIMILARITIES_FILENAME,
    TRAIN_RECORD_FILENAME,
    WEIGHTS_FILENAME,
    evaluation_dir,
)
from circle_repro.report.targets import PROTOCOLS as REPORTED_PROTOCOLS

MODEL_CONFIG = dict(
    type="EmbeddingModel", backbone="small_cnn", in_channels=3, embedding_dim=8, num_classes=2, loss={"type": "circle"}
)


def _model(seed: int = 0) -> EmbeddingModel:
    torch.manual_seed(seed)
    return EmbeddingModel(**{k: v for k, v in MODEL_CONFIG.items() if k != "type"}).eval()


class Recorder:
    """A model embedder that remembers each (rows, flip) it is asked for, and caches the answers."""

    def __init__(self, model, root, transform, cache: dict):
        self.embed = model_embedder(model, root, transform, batch_size=4)
        self.calls: list[tuple[tuple[str, ...], bool]] = []
        self.cache = cache  # shared by the tests of one data set: each image set is embedded once

    def __call__(self, rows: pd.DataFrame, flip: bool) -> np.ndarray:
        key = (tuple(rows["path"]), flip)
        self.calls.append(key)
        if key not in self.cache:
            self.cache[key] = self.embed(rows, flip)
        return self.cache[key]

    def flips(self) -> set[bool]:
        return {flip for _, flip in self.calls}


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> prepared folder, each built lazily once for the module."""
    root = tmp_path_factory.mktemp("prepared")
    built: dict[str, object] = {}

    def get(name: str):
        if name in built:
            return built[name]
        raw, out = root / name / "raw", root / name / "out"
        if name == "cub":
            build_cub(raw, cub_members(per_class=3))
            cub200.prepare_raw(raw, out)
        elif name == "lfw":
            raw.mkdir(parents=True)
            build_verification_bin(raw / "lfw.bin", n_pairs=10)
            LFW.prepare_raw(raw, out)
        elif name == "ytf":
            build_youtube_faces(raw)
            ytf.prepare_raw(raw, out)
        elif name == "market":
            build_market1501(raw)
            market1501.prepare_raw(raw, out)
        elif name == "ijbc":
            build_ijbc(raw)
            ijbc.prepare_raw(raw, out, workers=1)
        elif name == "megaface":
            build_megaface(raw)
            megaface.prepare_raw(raw, out)
        built[name] = out
        return out

    return get


_CACHES: dict[str, dict] = {}


def _recorder(model, prepared, name):
    transform = {"cub": "retrieval", "market": "reid"}.get(name, "face")
    root = prepared(name)
    return Recorder(model, root, transform, _CACHES.setdefault(name, {})), TestSet.load(root)


# --- the registry and the embedder ------------------------------------------------------------


def test_registry_covers_every_protocol_the_report_knows():
    assert set(PROTOCOLS) == set(REPORTED_PROTOCOLS)
    assert get_protocol("reid") is PROTOCOLS["reid"]
    with pytest.raises(ValueError, match=r"unknown evaluation protocol 'nope'.*'megaface'"):
        get_protocol("nope")


@pytest.mark.parametrize("name,transform", [("market", "reid"), ("megaface", "face")])
def test_embedder_gives_backbone_features_and_flip_flips_the_input(model, prepared, name, transform):
    root = prepared(name)
    rows = TestSet.load(root).frame.iloc[[0, 2, 3]]
    embed = model_embedder(model, root, transform, batch_size=2)
    test_transform = build_transform(transform, train=False)
    images = []
    for path in rows["path"]:
        with Image.open(root / path) as image:
            images.append(test_transform(image.convert(IMAGE_MODES[transform])))
    batch = torch.stack(images)
    with torch.no_grad():
        plain, mirrored = model.backbone(batch).numpy(), model.backbone(torch.flip(batch, dims=[-1])).numpy()
        expected_unit = model.embed(batch).numpy()
    features, flipped = embed(rows, False), embed(rows, True)
    assert features.dtype == np.float32 and features.shape == (3, 8)
    np.testing.assert_allclose(features, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flipped, mirrored, rtol=1e-5, atol=1e-6)
    assert not np.allclose(features, flipped), "a random CNN is not mirror-symmetric"
    np.testing.assert_allclose(unit(features), expected_unit, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no rows"):
        embed(rows.iloc[:0], False)


# --- retrieval ---------------------------------------------------------------------------------


def test_retrieval_equals_the_library_on_the_same_features(model, prepared):
    embed, test = _recorder(model, prepared, "cub")
    result = PROTOCOLS["retrieval"](embed, test, {"protocol": "retrieval", "ks": [1, 2, 4]})
    features = unit(embed(test.frame, False))
    labels = test.frame["label"].to_numpy()
    assert len(test.frame) == 9
    assert result.metrics == retrieval_metrics(features, labels, ks=[1, 2, 4])
    assert list(result.metrics)[:3] == ["R@1", "R@2", "R@4"]
    assert np.array_equal(result.per_query["ids"], np.arange(9))
    assert result.per_query["R@1"].mean() == pytest.approx(result.metrics["R@1"], abs=1e-12)
    assert result.per_query["MAP@R"].mean() == pytest.approx(result.metrics["MAP@R"], abs=1e-12)
    assert embed.flips() == {False}
    sim_features, sim_labels = result.similarity_inputs
    assert np.array_equal(sim_features, features) and np.array_equal(sim_labels, labels)


# --- verification_pairs ------------------------------------------------------------------------


@pytest.mark.parametrize("flip", [False, True])
def test_verification_pairs_equals_the_library_with_and_without_flip(model, prepared, flip):
    embed, test = _recorder(model, prepared, "lfw")
    settings = {"protocol": "verification_pairs", "n_folds": 5, "fars": [0.1, 0.5], "flip": flip}
    result = PROTOCOLS["verification_pairs"](embed, test, settings)
    raw = embed(test.frame, False)
    features = flip_sum_embeddings(raw, embed(test.frame, True)) if flip else unit(raw)
    pairs = read_pairs(test.root)
    row = {path: i for i, path in enumerate(test.frame["path"])}
    scores = np.array(
        [features[row[a]] @ features[row[b]] for a, b in zip(pairs["path_a"], pairs["path_b"], strict=True)]
    )
    mean, std = kfold_accuracy(scores, pairs["issame"], n_folds=5)
    tars = tar_at_far(scores, pairs["issame"], [0.1, 0.5])
    assert list(result.metrics) == ["accuracy", "accuracy_std", "TAR@FAR=0.1", "TAR@FAR=0.5"]
    assert result.metrics["accuracy"] == pytest.approx(mean, abs=1e-12)
    assert result.metrics["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert result.metrics["TAR@FAR=0.1"] == tars[0.1] and result.metrics["TAR@FAR=0.5"] == tars[0.5]
    assert np.array_equal(result.per_query["ids"], np.arange(10))
    assert result.per_query["accuracy"].mean() == pytest.approx(mean, abs=1e-12)  # equal folds
    assert embed.flips() == ({False, True} if flip else {False})


def test_flip_sum_is_the_normalised_sum_of_image_and_mirror_features(model, prepared):
    embed, test = _recorder(model, prepared, "lfw")
    PROTOCOLS["verification_pairs"](embed, test, {"n_folds": 5, "flip": True})
    raw, mirrored = embed(test.frame, False), embed(test.frame, True)
    total = raw.astype(np.float64) + mirrored
    expected = total / np.linalg.norm(total, axis=1, keepdims=True)
    np.testing.assert_allclose(flip_sum_embeddings(raw, mirrored), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flip", [False, True])
def test_ytf_video_pairs_pool_normalised_frame_features_per_video(model, prepared, flip):
    embed, test = _recorder(model, prepared, "ytf")
    result = PROTOCOLS["verification_pairs"](embed, test, {"n_folds": 10, "fars": [0.1], "flip": flip})
    raw = embed(test.frame, False)
    frames = raw.astype(np.float64) + (embed(test.frame, True) if flip else 0)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    videos = {t: frames[test.frame["template"].to_numpy() == t].mean(axis=0) for t in test.frame["template"].unique()}
    videos = {t: v / np.linalg.norm(v) for t, v in videos.items()}
    pairs = ytf.read_video_pairs(test.root)
    assert len(pairs) == 20 and pairs["fold"].tolist() == list(np.repeat(np.arange(1, 11), 2))
    scores = np.array([videos[a] @ videos[b] for a, b in zip(pairs["template_a"], pairs["template_b"], strict=True)])
    mean, std = kfold_accuracy(scores, pairs["issame"], n_folds=10)
    assert result.metrics["accuracy"] == pytest.approx(mean, abs=1e-12)
    assert result.metrics["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert result.metrics["TAR@FAR=0.1"] == tar_at_far(scores, pairs["issame"], [0.1])[0.1]
    assert result.per_query["accuracy"].mean() == pytest.approx(mean, abs=1e-12)
    sim_features, sim_labels = result.similarity_inputs
    np.testing.assert_allclose(sim_features, frames, rtol=1e-5, atol=1e-6)
    assert np.array_equal(sim_labels, test.frame["label"].to_numpy())


def test_ytf_folds_that_are_not_positional_are_warned_about(model, prepared, tmp_path):
    embed, test = _recorder(model, prepared, "ytf")
    pairs = ytf.read_video_pairs(test.root)
    ytf.write_video_pairs(pairs.iloc[1:], tmp_path)  # one pair dropped: the folds shift
    with pytest.warns(UserWarning, match="'fold' column is not 10 contiguous folds"):
        PROTOCOLS["verification_pairs"](embed, TestSet(tmp_path, test.frame), {})  # images from the recorder's root


# --- reid --------------------------------------------------------------------------------------


REID_SETTINGS = [
    {},
    {"ranks": [1, 2], "flip": True},
    {"ranks": [1, 3], "query_expansion": {"k": 2, "alpha": 3}, "rerank": {"k1": 3, "k2": 2, "lambda": 0.3}},
]


@pytest.mark.parametrize("settings", REID_SETTINGS, ids=["plain", "flip", "qe+rerank"])
def test_reid_equals_the_library_on_the_same_features(model, prepared, settings):
    embed, test = _recorder(model, prepared, "market")
    result = PROTOCOLS["reid"](embed, test, {"protocol": "reid", **settings})
    frame = test.frame
    query, gallery = frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]
    both = frame[frame["role"].isin(["query", "gallery"])]
    raw = embed(both, False)
    in_query = (both["role"] == "query").to_numpy()
    options = {}
    if settings.get("flip"):
        flipped = embed(both, True)
        options |= {"q_flipped_feats": flipped[in_query], "g_flipped_feats": flipped[~in_query]}
    if "query_expansion" in settings:
        options["query_expansion"] = reid_eval.QueryExpansion(k=2, alpha=3)
        options["reranking"] = Reranking(k1=3, k2=2, lambda_value=0.3)
    ranks = settings.get("ranks", [1, 5, 10])
    expected = reid_eval.evaluate(
        raw[in_query],
        query["label"],
        query["camera"],
        raw[~in_query],
        gallery["label"],
        gallery["camera"],
        max_rank=max(ranks),
        **options,
    )
    assert list(result.metrics) == [f"R-{k}" for k in ranks] + ["mAP", "mINP"]
    for k in ranks:
        assert result.metrics[f"R-{k}"] == expected.cmc[min(k, len(expected.cmc)) - 1]
    assert result.metrics["mAP"] == expected.mAP and result.metrics["mINP"] == expected.mINP
    per_query = result.per_query
    assert np.array_equal(per_query["ids"], query.index.to_numpy())  # every fixture query has a true match
    assert per_query["R-1"].mean() == pytest.approx(result.metrics["R-1"], abs=1e-12)
    assert per_query["mAP"].mean() == pytest.approx(result.metrics["mAP"], abs=1e-12)
    assert per_query["mINP"].mean() == pytest.approx(result.metrics["mINP"], abs=1e-12)
    assert embed.flips() == ({False, True} if settings.get("flip") else {False})


def test_reid_per_query_option_matches_the_averages():
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(30, 6)), rng.normal(size=(80, 6))
    q_pids, g_pids = rng.integers(0, 8, 30), rng.integers(0, 8, 80)
    q_pids[0] = 99  # no match in the gallery: skipped
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 80)
    result = reid_eval.evaluate(q, q_pids, q_cams, g, g_pids, g_cams, max_rank=5, per_query=True, chunk_size=7)
    plain = reid_eval.evaluate(q, q_pids, q_cams, g, g_pids, g_cams, max_rank=5)
    details = result.per_query
    assert plain.per_query is None
    assert 0 not in details.query_indices and len(details.query_indices) == result.n_valid_queries
    assert details.average_precision.mean() == result.mAP == pytest.approx(plain.mAP, abs=1e-12)
    assert details.inverse_negative_penalty.mean() == result.mINP
    for k in (1, 3, 5):
        assert details.hits(k).mean() == pytest.approx(result.rank(k), abs=1e-12)


# --- ijb ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"flip": False, "use_norm_score": False, "use_detector_score": False}],
    ids=["insightface-defaults", "all-off"],
)
def test_ijb_equals_the_library_on_the_same_features(model, prepared, options):
    embed, test = _recorder(model, prepared, "ijbc")
    fars = [0.2, 0.5]
    result = PROTOCOLS["ijb"](embed, test, {"protocol": "ijb", "fars": fars, **options})
    frame = test.frame
    on = not options
    scores_table = ijbc.read_detector_scores(test.root).set_index("path")["detector_score"]
    templates, feats = ijb_eval.template_features(
        embed(frame, False),
        frame["template"],
        frame["media"],
        flipped_feats=embed(frame, True) if on else None,
        detector_scores=scores_table[frame["path"]].to_numpy() if on else None,
        norm_score=on,
    )
    pairs = ijbc.read_template_pairs(test.root)
    scores = ijb_eval.score_pairs(templates, feats, pairs["t1"], pairs["t2"])
    expected = ijb_eval.tar_at_far_ijb(scores, pairs["label"], fars)
    assert result.metrics == {f"TAR@FAR={far:g}": expected[far] for far in fars}
    assert list(result.per_query) == ["ids"] and len(result.per_query["ids"]) == 0
    assert result.similarity_inputs is None
    assert embed.flips() == ({False, True} if on else {False})


def test_ijb_default_fars_and_key_format(model, prepared):
    embed, test = _recorder(model, prepared, "ijbc")
    result = PROTOCOLS["ijb"](embed, test, {})
    assert list(result.metrics) == [
        "TAR@FAR=1e-06",
        "TAR@FAR=1e-05",
        "TAR@FAR=0.0001",
        "TAR@FAR=0.001",
        "TAR@FAR=0.01",
        "TAR@FAR=0.1",
    ]


# --- megaface ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{}, {"flip": True, "fars": [1e-6, 0.1], "n_distractors": 2}], ids=["defaults", "flip-subset"]
)
def test_megaface_equals_the_library_on_the_same_features(model, prepared, settings):
    embed, test = _recorder(model, prepared, "megaface")
    result = PROTOCOLS["megaface"](embed, test, {"protocol": "megaface", **settings})
    frame = test.frame
    probes, distractors = frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]
    distractors = distractors.iloc[: settings.get("n_distractors", len(distractors))]
    flip = settings.get("flip", False)

    def features(rows):
        raw = embed(rows, False)
        return flip_sum_embeddings(raw, embed(rows, True)) if flip else unit(raw)

    probe_noisy = megaface.noise_flags(test.root, probes["path"])
    distractor_noisy = megaface.noise_flags(test.root, distractors["path"])
    assert probe_noisy.sum() == 2 and distractor_noisy.sum() == (1 if len(distractors) > 2 else 0)
    fars = settings.get("fars", [1e-6])
    expected = [
        megaface_eval.evaluate(
            features(probes),
            probes["label"],
            features(distractors),
            far=far,
            probe_noisy=probe_noisy,
            distractor_noisy=distractor_noisy,
        )
        for far in fars
    ]
    assert result.metrics == {"rank-1": expected[0].rank1} | {f"TAR@FAR={r.far:g}": r.tar for r in expected}
    assert list(result.metrics)[:2] == ["rank-1", "TAR@FAR=1e-06"]
    ids, hits = result.per_query["ids"], result.per_query["rank-1"]
    assert len(ids) == expected[0].n_probe_pairs == 2 + 6 + 2 and len(np.unique(ids)) == len(ids)
    assert hits.mean() == pytest.approx(result.metrics["rank-1"], abs=1e-12)
    sim_features, sim_labels = result.similarity_inputs
    assert len(sim_features) == len(probes) and np.array_equal(sim_labels, probes["label"].to_numpy())


def test_megaface_pair_hits_option_lists_every_genuine_pair():
    rng = np.random.default_rng(0)
    probes, distractors = rng.normal(size=(9, 5)), rng.normal(size=(40, 5))
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    result = megaface_eval.evaluate(probes, ids, distractors, pair_hits=True, chunk_size=7)
    assert megaface_eval.evaluate(probes, ids, distractors).pair_hits is None
    expected_pairs = [(p, g) for p in range(9) for g in range(9) if p != g and ids[p] == ids[g]]
    assert [tuple(pair) for pair in result.probe_pairs] == expected_pairs
    assert result.pair_hits.mean() == pytest.approx(result.rank1, abs=1e-12)


# --- bad settings and inputs -------------------------------------------------------------------


class NeverEmbed:
    def __call__(self, rows, flip):
        raise AssertionError("settings are checked before any image is embedded")


@pytest.mark.parametrize(
    "protocol,settings,message",
    [
        ("retrieval", {}, r"retrieval: missing setting\(s\) \['ks'\]"),
        ("retrieval", {"ks": [1], "flip": True}, r"retrieval: unknown setting\(s\) \['flip'\]; allowed: \['ks'\]"),
        ("retrieval", {"ks": [0]}, "'ks' must be a non-empty list of positive integers"),
        ("retrieval", {"protocol": "reid", "ks": [1]}, "retrieval: settings name protocol 'reid'"),
        ("verification_pairs", {"flip": "yes"}, "'flip' must be true or false"),
        ("verification_pairs", {"n_folds": 1}, "'n_folds' must be an integer >= 2"),
        ("verification_pairs", {"fars": [2.0]}, "verification_pairs: setting 'fars'"),
        ("reid", {"ranks": []}, "'ranks' must be a non-empty list"),
        ("reid", {"rerank": {"k1": 3, "lam": 0.3}}, r"'rerank' has unknown key\(s\) \['lam'\]"),
        ("reid", {"rerank": {"k1": 3, "lambda": 2}}, r"reid: setting 'rerank': Reranking.lambda_value"),
        ("reid", {"query_expansion": 5}, "'query_expansion' must be a mapping"),
        ("ijb", {"use_norm_score": 1}, "'use_norm_score' must be true or false"),
        ("megaface", {"n_folds": 10}, r"megaface: unknown setting\(s\) \['n_folds'\]"),
    ],
)
def test_bad_settings_are_refused_before_embedding(tmp_path, protocol, settings, message):
    frame = pd.DataFrame({"path": ["a.jpg"], "label": [0], "split": ["test"]})
    with pytest.raises(ValueError, match=message):
        PROTOCOLS[protocol](NeverEmbed(), TestSet(tmp_path, frame), settings)


def test_megaface_subset_larger_than_the_distractors_is_refused(model, prepared):
    embed, test = _recorder(model, prepared, "megaface")
    with pytest.raises(ValueError, match=r"'n_distractors' must be null or an integer in 1\.\.4"):
        PROTOCOLS["megaface"](embed, test, {"n_distractors": 5})


def test_missing_inputs_are_named(model, prepared, tmp_path):
    embed, test = _recorder(model, prepared, "cub")
    with pytest.raises(ManifestError, match=r"neither pairs.parquet nor video_pairs.parquet"):
        PROTOCOLS["verification_pairs"](embed, test, {})
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['role', 'camera'\].*'reid'"):
        PROTOCOLS["reid"](embed, test, {})
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['template', 'media'\]"):
        PROTOCOLS["ijb"](embed, test, {})


# --- the orchestrator --------------------------------------------------------------------------


def _fake_run(run_dir):
    """A run folder as training leaves it: train record, trained and initial weights."""
    run_dir.mkdir(parents=True)
    torch.save(_model(1).state_dict(), run_dir / WEIGHTS_FILENAME)
    torch.save(_model(2).state_dict(), run_dir / INITIAL_WEIGHTS_FILENAME)
    record = {
        "run_id": "exp/CircleLoss/seed0",
        "model": MODEL_CONFIG,
        "mlflow_run_id": "abc",
        "tracking_uri": "unused",
        "config": {"experiment": "exp", "loss_name": "CircleLoss", "seed": 0, "table": "table3"},
        "config_hash": "0123",
        "provenance": {"data_hash": "x"},
    }
    (run_dir / TRAIN_RECORD_FILENAME).write_text(json.dumps(record))


_RUN = {"run_id": "exp/CircleLoss/seed0", "experiment": "exp", "loss_name": "CircleLoss", "seed": 0, "table": "table3",
        "trained_by": "exp/CircleLoss/seed0"}  # fmt: skip


def test_evaluate_run_writes_results_and_skips_similarities_without_identities(prepared, tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(evaluate_module, "log_to_run", lambda *args, **kwargs: logged.append((args, kwargs)))
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    out = evaluation_dir(run_dir)
    out.mkdir()
    (out / SIMILARITIES_FILENAME).write_bytes(b"stale")

    config = _RUN | {"dataset": "ijbc", "evaluation": {"protocol": "ijb", "fars": [0.5]}}
    result = evaluate_run(run_dir, prepared("ijbc"), config, out, device="cpu")
    assert result.protocol == "ijb" and result.n_images == 8
    assert list(result.metrics) == list(result.untrained_metrics) == ["TAR@FAR=0.5"]
    assert json.loads((out / "metrics.json").read_text()) == result.to_json()
    with np.load(out / "per_query.npz") as per_query:
        assert per_query.files == ["ids"] and len(per_query["ids"]) == 0
    assert not (out / SIMILARITIES_FILENAME).exists(), "a stale similarities.npz is removed"
    (_, _, metrics), _ = logged[-1]
    assert set(metrics) == {"TAR@FAR=0.5", "untrained_TAR@FAR=0.5"}

    config = _RUN | {"dataset": "megaface", "evaluation": {"protocol": "megaface", "fars": [0.1]}}
    result = evaluate_run(run_dir, prepared("megaface"), config, out, device="cpu")
    assert list(result.metrics) == ["rank-1", "TAR@FAR=0.1"]
    with np.load(out / SIMILARITIES_FILENAME) as similarities:
        assert set(similarities.files) == {"s_p", "s_n", "anchor_s_n", "anchor_s_p"}
        assert len(similarities["anchor_s_p"]) == evaluate_module.SIMILARITY_ANCHORS
    with np.load(out / "per_query.npz") as per_query:
        assert per_query["rank-1"].mean() == pytest.approx(result.metrics["rank-1"], abs=1e-12)

    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        evaluate_run(
            run_dir, prepared("megaface"), _RUN | {"dataset": "megaface", "evaluation": {"protocol": "x"}}, out
        )


# --- metrics that are trivial for their input ---------------------------------------------------------


def _random_embedder(rows: pd.DataFrame, flip: bool) -> np.ndarray:
    return np.random.default_rng(len(rows)).normal(size=(len(rows), 8))


def _test_set(root, labels) -> TestSet:
    frame = pd.DataFrame({"path": [f"images/{i}.png" for i in range(len(labels))], "label": labels, "split": "test"})
    return TestSet(root, frame)


def test_retrieval_on_one_class_says_its_metrics_are_trivial(tmp_path):
    one_class = get_protocol("retrieval")(_random_embedder, _test_set(tmp_path, [7] * 6), {"ks": [1, 2]})
    assert one_class.metrics["R@1"] == one_class.metrics["R@2"] == 1.0  # whatever the (random) features
    assert len(one_class.trivial) == 1 and "one class (7)" in one_class.trivial[0]
    assert (
        get_protocol("retrieval")(_random_embedder, _test_set(tmp_path, [7, 7, 7, 8, 8, 8]), {"ks": [1]}).trivial == ()
    )


@pytest.mark.parametrize(("issame", "expected"), [([True] * 40, "all 40 test pairs match"),
                                                   ([False] * 40, "none of the 40 test pairs match"),
                                                   ([True, False] * 20, None)])  # fmt: skip
def test_verification_pairs_that_all_match_or_all_differ_say_their_metrics_are_trivial(tmp_path, issame, expected):
    test = _test_set(tmp_path, [0, 0, 1, 1] * 10)
    write_pairs(pd.DataFrame({"path_a": test.frame["path"], "path_b": test.frame["path"][::-1].to_numpy(),
                              "issame": issame}), tmp_path)  # fmt: skip
    result = get_protocol("verification_pairs")(_random_embedder, test, {"n_folds": 10, "fars": [0.1]})
    if expected is None:
        assert result.trivial == ()
    else:
        assert len(result.trivial) == 1 and expected in result.trivial[0]
        assert result.metrics["accuracy"] >= 0.9  # random features, yet a near-perfect accuracy
        assert sorted(result.metrics) == ["accuracy", "accuracy_std"]  # TAR@FAR needs both kinds of pair


def test_evaluate_run_refuses_an_output_folder_holding_a_folder_before_embedding(prepared, tmp_path, monkeypatch):
    """``--out`` is replaced as a whole: a run folder with its checkpoints in work/ is refused, not copied."""
    monkeypatch.setattr(evaluate_module, "evaluate_model", lambda *args, **kwargs: pytest.fail("embedded first"))
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    (run_dir / "work").mkdir()
    config = _RUN | {"dataset": "cub200", "evaluation": {"protocol": "retrieval", "ks": [1]}}
    with pytest.raises(ValueError, match=r"run: holds the folder work, which this step does not write"):
        evaluate_run(run_dir, prepared("cub"), config, run_dir, device="cpu")
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([INITIAL_WEIGHTS_FILENAME, TRAIN_RECORD_FILENAME,
                                                                 WEIGHTS_FILENAME, "work"])  # fmt: skip


def test_evaluate_run_warns_and_records_when_its_metrics_are_trivial(prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_module, "log_to_run", lambda *args, **kwargs: None)
    trivial = ProtocolResult({"R@1": 1.0}, {"ids": np.arange(2)}, None, ("the test set has one class (3): ...",))
    monkeypatch.setattr(evaluate_module, "evaluate_model", lambda *args, **kwargs: trivial)
    _fake_run(tmp_path / "run")
    config = _RUN | {"dataset": "cub200", "evaluation": {"protocol": "retrieval", "ks": [1]}}
    with pytest.warns(evaluate_module.TrivialMetricWarning, match=r"exp/CircleLoss/seed0 on .*one class \(3\)"):
        result = evaluate_run(tmp_path / "run", prepared("cub"), config, evaluation_dir(tmp_path / "run"), device="cpu")
    assert (
        json.loads((evaluation_dir(tmp_path / "run") / "metrics.json").read_text())["trivial"]
        == list(result.trivial)
        == list(trivial.trivial)
    )
