"""circle-repro plan: hand-computed training, evaluation and preparation hours, derived job resources, disk,
missing data, the JSON, the CLI (and its refusal), and the actual hours read from Snakemake benchmark files."""

import copy
import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from circle_repro import layout
from circle_repro import plan as planning
from circle_repro import workflow as wf
from circle_repro.cli import main
from circle_repro.config import TRAIN_RESOURCE_DEFAULTS, Study, load_params, load_study
from circle_repro.data.sources import load_sources
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.runner_config import _loop_configs
from circle_repro.layout import DEFAULT_RATES as _RATES_PATH
from circle_repro.layout import DEFAULT_THROUGHPUT
from circle_repro.plan.jobs import metric_similarities
from circle_repro.report.render import Paragraph, Table
from circle_repro.report.sections.compute import compute_section
from support import REPO_ROOT

DEFAULT_RATES = REPO_ROOT / _RATES_PATH

ADAM = {"type": "Adam", "lr": 0.0001}
RETRIEVAL = {"protocol": "retrieval", "ks": [1, 2]}
REID = {"protocol": "reid", "ranks": [1]}


def _experiment(table, dataset, backbone, train, sampler, losses, seeds, gpus, runtime_min=600, evaluation=RETRIEVAL):
    return {
        "description": f"{table} on {dataset}",
        "table": table,
        "dataset": dataset,
        "seeds": seeds,
        "model": {"backbone": backbone, "embedding_dim": 512},
        "sampler": sampler,
        "train": {**train, "optimizer": ADAM, "amp": "bf16"},
        "evaluation": evaluation,
        "losses": losses,
        "resources": {"gpus": gpus, "cpus_per_gpu": 4, "mem_mb_per_gpu": 8000, "runtime_min": runtime_min},
    }


@pytest.fixture
def params_file(tmp_path, repo_params):
    """A params file whose profile `test` has three experiments with schedules small enough to count by hand."""
    params = copy.deepcopy(repo_params)
    params.pop("sweeps", None)
    pairwise = {"CircleLoss": {"type": "circle", "m": 0.4, "gamma": 80}, "Triplet": {"type": "triplet", "margin": 0.1}}
    params["experiments"] = {
        # 3,000 iterations x 80 images on 1 GPU at 800 img/s: 300 s per run; 2 losses x 2 seeds
        "cub_iters": _experiment("table5", "cub200", "bn_inception", {"iterations": 3000}, {"p": 16, "k": 5},
                                 pairwise, [0, 1], gpus=1, runtime_min=4),
        # 10 epochs x (12,936 // 64 // 2 = 101 batches per rank) x 64 images x 2 GPUs at 2,000 img/s
        "market_epochs": _experiment("table4", "market1501", "resnet50", {"epochs": 10}, {"p": 16, "k": 4},
                                     {"CircleLoss": {"type": "circle_classifier", "m": 0.25, "gamma": 128}}, [0],
                                     gpus=2, evaluation=REID),
        "market_face_backbone": _experiment("table4", "market1501", "iresnet34", {"iterations": 10}, {"p": 16, "k": 4},
                                            {"AM-Softmax": {"type": "am_softmax", "m": 0.35, "gamma": 64}}, [0],
                                            gpus=1, evaluation=REID),
    }  # fmt: skip
    params["profiles"] = {"test": {"description": "hand-countable", "experiments": list(params["experiments"])}}
    params["profile"] = "test"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def throughput_file(tmp_path):
    """bn_inception: plain 1,000 and mmengine 800 img/s (the mmengine rate counts); resnet50 2,000 img/s,
    measured at 384x128 (its experiment trains at 256x128); iresnet34 not measured."""
    results = [
        {"model": "bn_inception", "input": [3, 227, 227], "images_per_s": {"plain": 1000.0, "mmengine": 800.0}},
        {"model": "resnet50", "input": [3, 384, 128], "images_per_s": {"plain": 2000.0}},
    ]
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"device": "Test GPU", "amp": "bf16", "batch": 128, "results": results}))
    return path


RATES = """
decode:
  source: test
  per_core_images_per_s:
    face: {images_per_s: 1000, row: test}
    reid: {images_per_s: 400, row: test}
    retrieval: {images_per_s: 250, row: test}
    mnist: {images_per_s: 1000, row: test}
preparation:
  source: test
  per_core_images_per_s:
    face: {images_per_s: 2000, row: test}
    reid: {images_per_s: 1000, row: test}
    retrieval: {images_per_s: 500, row: test}
    mnist: {images_per_s: 2000, row: test}
metric: {source: test, row: test, images: 1000, seconds: 100, peak_rss_mb: 6000, threads: 2}
forward_speedup_over_training: 2
forward_speedup_source: test
"""


@pytest.fixture
def rates_file(tmp_path):
    """Per-core decode: retrieval 250 img/s (x 4 CPUs = 1,000 >= bn_inception's 800: GPU-bound), reid 400
    (x 4 = 1,600 < resnet50's 2,000: data-bound); metric 1,000 x 1,000 similarities in 100 s (10^4/s)."""
    path = tmp_path / "rates.yaml"
    path.write_text(RATES)
    return path


def _plan(params_file, throughput_file, data_root, checkpoints=False, rates_file=None):
    study = load_study(params_file)
    rates = planning.load_rates(rates_file) if rates_file is not None else None
    return planning.make_plan(
        study, planning.load_throughput(throughput_file), data_root, rates=rates, checkpoints=checkpoints
    )


def _tables(plan):
    return {table.table: table for table in plan.tables}


def test_gpu_hours_are_throughput_times_schedule_times_runs(params_file, throughput_file, rates_file, tmp_path):
    tables = _tables(_plan(params_file, throughput_file, tmp_path / "data", rates_file=rates_file))
    cub = tables["table5"].experiments[0]
    assert (cub.runs, cub.iterations_per_run, cub.images_per_run, cub.images_per_s) == (4, 3000, 240_000, 800.0)
    assert cub.gpu_hours_per_run == pytest.approx(300 / 3600)
    assert tables["table5"].gpu_hours == pytest.approx(4 * 300 / 3600)

    market, face = tables["table4"].experiments
    assert (market.train_images, market.train_images_from) == (12936, "sources.yaml")
    assert market.iterations_per_run == 10 * 101 and market.images_per_run == 1010 * 64 * 2
    # data-bound: 400 img/s per core x 4 CPUs per GPU = 1,600 < the GPU's 2,000
    assert (market.compute_images_per_s, market.images_per_s) == (2000.0, 1600.0)
    assert market.gpu_hours == pytest.approx(1010 * 64 * 2 / 1600 / 3600)
    assert market.train.hours == pytest.approx(1010 * 64 * 2 / (1600 * 2) / 3600)  # wall: 2 GPUs
    assert face.gpu_hours is None and "no throughput measured for iresnet34" in face.notes[0]
    assert tables["table4"].gpu_hours == pytest.approx(market.gpu_hours)
    assert tables["table4"].not_estimated == ("market_face_backbone",)
    assert [t.table for t in tables.values()] == ["table1", "table2", "table3", "table4", "table5"]
    assert not tables["table1"].experiments and tables["table1"].runs == 0


def test_estimates_say_where_they_may_be_off(params_file, throughput_file, rates_file, tmp_path):
    plan = _plan(params_file, throughput_file, tmp_path / "data", rates_file=rates_file)
    market = _tables(plan)["table4"].experiments[0]
    assert "throughput measured at 3x384x128 input; trains at 3x256x128" in market.notes
    assert "data-bound: decode on 4 CPUs per GPU give 1,600 img/s per GPU, the GPU 2,000" in market.notes
    # 300 s on one GPU x 1.5 = 7.5 min > runtime_min 4; no other job exceeds
    assert plan.exceeding == {"train cub_iters": "needs 8 min (estimate x 1.5), declares runtime 4"}


def test_a_gpu_training_without_runtime_min_gets_the_estimate(params_file, throughput_file, rates_file):
    """cub_iters at 60,000 iterations x 80 images / 800 img/s = 6,000 s = 100 min; x 1.5 = 150 min."""
    params = load_params(params_file)
    params["experiments"]["cub_iters"]["train"]["iterations"] = 60_000
    del params["experiments"]["cub_iters"]["resources"]["runtime_min"]
    study = Study.of(params)
    throughput, rates = planning.load_throughput(throughput_file), planning.load_rates(rates_file)
    assert wf.train_resources(study, "cub_iters", throughput, rates)["runtime"] == 150
    assert wf.train_resources(study, "cub_iters")["runtime"] == TRAIN_RESOURCE_DEFAULTS["runtime_min"]  # no rates
    assert wf.train_resources(study, "market_epochs", throughput, rates)["runtime"] == 600  # declared: kept
    rule = wf.train_rule_resources(study, throughput, rates)
    assert rule["runtime"](SimpleNamespace(experiment="cub_iters")) == 150
    plan = planning.make_plan(study, throughput, "no-data", rates=rates, checkpoints=False)
    assert plan.exceeding == {}


def test_compute_only_without_rates(params_file, throughput_file, tmp_path):
    """Without a rates file the training rate is the GPU's, and evaluation and preparation are not estimated."""
    tables = _tables(_plan(params_file, throughput_file, tmp_path / "data"))
    market = tables["table4"].experiments[0]
    assert market.gpu_hours == pytest.approx(1010 * 64 * 2 / 2000 / 3600)
    assert market.evaluate.hours is None and tables["table4"].datasets[0].prepare.hours is None


def test_evaluate_job_runtime_and_memory_by_hand(params_file, throughput_file, rates_file, tmp_path):
    """cub_iters: 5,924 CUB test images (sources.yaml), embedded with the trained and the initial weights
    (no flip): 11,848 images at min(800 x 2 forward, 250 x 4 CPUs decode) = 1,000 img/s; retrieval metric
    5,924^2 similarities at 10^4/s, twice. Memory: 6,000 MB measured + 5 copies of 5,924 x 512 float32."""
    study = load_study(params_file)
    throughput, rates = planning.load_throughput(throughput_file), planning.load_rates(rates_file)
    seconds = 2 * 5924 / 1000 + 2 * 5924**2 / 1e4
    mem_mb = 6000 + 5 * 5924 * 512 * 4 / 2**20
    resources = wf.evaluate_resources(study, "cub_iters", throughput, rates)
    # 1.5 x 117.2 min = 175.8 -> 180 (multiples of 5); 1.5 x 6,057.9 MB = 9,086.8 -> 10,000 (multiples of 1,000)
    assert seconds / 60 * 1.5 == pytest.approx(175.77, abs=0.01) and mem_mb * 1.5 == pytest.approx(9086.8, abs=0.1)
    assert resources == {"runtime": 180, "mem_mb": 10000, "cpus_per_task": 4, "gpu": 1}
    job = (
        _tables(_plan(params_file, throughput_file, tmp_path / "d", rates_file=rates_file))["table5"]
        .experiments[0]
        .evaluate
    )
    assert (job.rule, job.jobs, job.images, job.images_per_s) == ("evaluate", 4, 2 * 5924, 1000.0)
    assert job.hours == pytest.approx(seconds / 3600) and job.mem_mb == pytest.approx(mem_mb)
    assert job.declared == resources and job.exceeds is None


def test_small_evaluations_and_cpu_ones_keep_the_floor(params_file, throughput_file, repo_params):
    throughput, rates = planning.load_throughput(throughput_file), planning.load_rates(DEFAULT_RATES)
    # the measured metric rate makes CUB's evaluation a few minutes: the fixed floor stands
    assert wf.evaluate_resources(load_study(params_file), "cub_iters", throughput, rates) == {
        "runtime": 30, "mem_mb": 8000, "cpus_per_task": 4, "gpu": 1,
    }  # fmt: skip
    demo = load_study(REPO_ROOT / "params.yaml", "demo")
    assert wf.evaluate_resources(demo, "demo_retrieval", throughput, rates) == wf.step_resources("evaluate")


def test_metric_similarities_per_protocol():
    counts = planning.EvaluationCounts(images=100, queries=30, counted_from="test")
    assert metric_similarities("retrieval", counts, {}) == 100 * 100
    assert metric_similarities("reid", counts, {}) == 30 * 70
    assert metric_similarities("reid", counts, {"rerank": {"k1": 20}}) == 100 * 100  # re-ranking: all pairs
    assert metric_similarities("megaface", counts, {"n_distractors": 10}) == 30 * 10
    assert metric_similarities("verification_pairs", counts, {}) == 100


def test_test_set_counts_from_sources_and_the_manifest(tmp_path):
    sources = load_sources()
    megaface = planning.evaluation_image_counts("megaface", sources["megaface"], None)
    assert (megaface.images, megaface.queries) == (1_000_000 + 3_500, 3_500)
    market = planning.evaluation_image_counts("market1501", sources["market1501"], None)
    assert (market.images, market.queries) == (3368 + 19732, 3368)
    assert planning.evaluation_image_counts("lfw", sources["lfw"], None).images == 12000  # the .bin's images
    assert planning.preparation_image_count(sources["ms1mv2"]) == 5_822_653
    assert planning.preparation_image_count(sources["market1501"]) == 12936 + 3368 + 19732
    prepared = tmp_path / "prepared" / "market1501"
    prepared.mkdir(parents=True)
    pd.DataFrame({"path": [f"{i}.jpg" for i in range(10)], "label": [0] * 10, "split": ["train"] * 4 + ["test"] * 6,
                  "role": [None] * 4 + ["query"] * 2 + ["gallery"] * 4}).to_parquet(prepared / "manifest.parquet")  # fmt: skip
    counted = planning.evaluation_image_counts("market1501", sources["market1501"], tmp_path)
    assert (counted.images, counted.queries) == (6, 2) and counted.counted_from.endswith("manifest.parquet")


def test_preparation_runtime_by_hand(rates_file):
    """MS1MV2: 5,822,653 images at 2,000 img/s on one CPU = 48.5 min, x 1.5 = 72.8 -> 75 min."""
    rates = planning.load_rates(rates_file)
    assert wf.prepare_resources("ms1mv2", rates) == {"runtime": 75, "mem_mb": 4000, "cpus_per_task": 1}
    assert wf.prepare_resources("cub200", rates) == wf.step_resources("prepare_data")  # 11,788 images: the floor
    job = planning.plan_dataset(load_sources()["ms1mv2"], REPO_ROOT / "no-data", rates).prepare
    assert job.hours == pytest.approx(5_822_653 / 2000 / 3600) and job.exceeds is None


def test_a_rehearsed_preparation_rate_replaces_the_decode_rate(rates_file, tmp_path):
    """YTF: 621,126 frames at a rehearsed 150 img/s = 69.0 min, x 1.5 = 103.5 -> 105 min (decode rate: the floor)."""
    rates = planning.load_rates(rates_file)
    assert wf.prepare_resources("ytf", rates) == wf.step_resources("prepare_data")
    rehearsed = tmp_path / "rehearsed.yaml"
    rehearsed.write_text(
        rates_file.read_text()
        + "preparation_by_dataset:\n  source: a rehearsal\n  per_core_images_per_s:\n"
        + "    ytf: {images_per_s: 150, row: prepare_data ytf 1500 10.0 150.0}\n"
    )
    rates = planning.load_rates(rehearsed)
    assert wf.prepare_resources("ytf", rates) == {"runtime": 105, "mem_mb": 4000, "cpus_per_task": 1}
    job = planning.plan_dataset(load_sources()["ytf"], REPO_ROOT / "no-data", rates).prepare
    assert (job.images_per_s, job.bound) == (150, "rehearsal")
    assert job.hours == pytest.approx(621_126 / 150 / 3600)
    assert wf.prepare_resources("ms1mv2", rates)["runtime"] == 75  # no row: its style's decode rate, as before


def test_rates_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "rates.yaml"
    bad.write_text(RATES.replace("retrieval: {images_per_s: 250", "retrieval: {images_per_s: 0"))
    problem = r"decode\.per_core_images_per_s\.retrieval\.images_per_s: 0 is less than or equal to the minimum of 0"
    with pytest.raises(ValueError, match=rf"rates\.yaml: invalid job rates file:\n  - {problem}; allowed: > 0"):
        planning.load_rates(bad)
    bad.write_text("decode: {}\n")
    with pytest.raises(
        ValueError, match=r"rates\.yaml: invalid job rates file:\n  - <top level>: 'preparation' is a required property"
    ):
        planning.load_rates(bad)
    with pytest.raises(FileNotFoundError, match="job rates file not found"):
        planning.load_rates(tmp_path / "nope.yaml")


def test_the_paper_profile_fits_its_declared_resources():
    """Every job of the paper profile fits its declared runtime with the measured rates of the repository."""
    study = load_study(REPO_ROOT / "params.yaml", "paper")
    plan = planning.make_plan(
        study, planning.load_throughput(REPO_ROOT / DEFAULT_THROUGHPUT), REPO_ROOT / "no-data",
        rates=planning.load_rates(DEFAULT_RATES), checkpoints=False,
    )  # fmt: skip
    assert plan.exceeding == {}
    for table in plan.tables:
        for rule in ("prepare_data", "train", "evaluate"):
            hours, missing = table.hours(rule)
            trains = rule != "train" or table.table not in ("table2", "table3")  # they evaluate table 1's weights
            assert (hours > 0) == trains and not missing, (table.table, rule, missing)


def test_a_prepared_manifest_gives_the_train_set_size(params_file, throughput_file, tmp_path):
    prepared = tmp_path / "data" / "prepared" / "market1501"
    prepared.mkdir(parents=True)
    frame = pd.DataFrame({"path": [f"{i}.jpg" for i in range(700)], "label": [i % 7 for i in range(700)],
                          "split": ["train"] * 640 + ["test"] * 60})  # fmt: skip
    frame.to_parquet(prepared / "manifest.parquet", index=False)
    market = _tables(_plan(params_file, throughput_file, tmp_path / "data"))["table4"].experiments[0]
    assert market.train_images == 640 and market.train_images_from.endswith("market1501/manifest.parquet")
    assert market.iterations_per_run == 10 * (640 // 64 // 2)


def test_missing_data_is_listed_with_what_to_do(params_file, throughput_file, tmp_path):
    data = tmp_path / "data"
    tables = _tables(_plan(params_file, throughput_file, data))
    (cub,), (market,) = tables["table5"].datasets, tables["table4"].datasets
    assert cub.state == "missing" and cub.missing.startswith(
        "not downloaded: the prepare_data job fetches it (1.1 GiB)"
    )
    assert cub.download_bytes == 1_150_585_339 and tables["table5"].data_bytes == 1_150_585_339
    assert "is manual and not placed: put" in market.missing and "Market-1501-v15.09.15.zip" in market.missing
    assert market.download_bytes is None and tables["table4"].data_size_unknown == ("market1501",)

    placed = data / "raw" / "market1501" / "Market-1501-v15.09.15.zip"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"zip")
    (market,) = _tables(_plan(params_file, throughput_file, data))["table4"].datasets
    assert market.missing is None and market.state == "downloaded" and market.on_disk_bytes == 3


def test_checkpoint_disk_is_weights_twice_plus_checkpoints_with_optimizer_state():
    study = load_study(REPO_ROOT / "params.yaml", "demo")
    experiment = study.experiment("demo_verification")
    assert experiment.spec["train"]["optimizer"]["type"] == "Adam"  # two state tensors per parameter
    runs = {loss: next(r for r in experiment.runs if r.loss == loss) for loss in ("AM-Softmax", "Softmax")}
    model = EmbeddingModel(
        "small_cnn", in_channels=1, embedding_dim=64, num_classes=5, loss=experiment.losses["AM-Softmax"].config
    )
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kept = planning.CHECKPOINTS_KEPT
    assert planning.run_disk_bytes(study, runs["AM-Softmax"], 5) == 2 * weights + kept * (weights + 2 * 4 * trainable)
    # the class-level head has num_classes x embedding_dim float32 weights: 2 weight files + each checkpoint's
    # copy and 2 Adam moments of them
    head = planning.run_disk_bytes(study, runs["AM-Softmax"], 7) - planning.run_disk_bytes(study, runs["AM-Softmax"], 5)
    assert head == 2 * 64 * 4 * (2 + kept * 3)


def test_checkpoints_kept_matches_the_training_config():
    for train in ({"iterations": 10, "optimizer": ADAM}, {"epochs": 2, "optimizer": ADAM}):
        assert _loop_configs(train, 5)["checkpoint"]["max_keep_ckpts"] == planning.CHECKPOINTS_KEPT
    assert planning.optimizer_slots({"type": "SGD", "lr": 0.1}) == 0
    assert planning.optimizer_slots({"type": "SGD", "lr": 0.1, "momentum": 0.9}) == 1


def test_paper_face_tables_count_training_once():
    study = load_study(REPO_ROOT / "params.yaml", "paper")
    trained_by = {name: e.trained_by for name, e in study.experiments.items() if e.trained_by is not None}
    if not trained_by:
        pytest.skip("the paper profile has no trained_by experiment")
    plans = {name: planning.plan_experiment(study, name, None, checkpoints=False) for name in trained_by}
    for name, trainer in trained_by.items():
        assert plans[name].gpu_hours == 0.0 and plans[name].checkpoint_bytes == 0
        assert plans[name].trained_by == trainer and trainer in plans[name].notes[0]


def test_plan_json_is_written_atomically(params_file, throughput_file, tmp_path, monkeypatch):
    plan = _plan(params_file, throughput_file, tmp_path / "data")
    out = tmp_path / "out" / "plan.json"
    planning.write_plan(plan, out)
    written = json.loads(out.read_text())
    assert written["runs"] == 6 and written["gpu_hours"] == pytest.approx(plan.gpu_hours, abs=1e-4)
    assert [t["table"] for t in written["tables"]] == ["table1", "table2", "table3", "table4", "table5"]
    assert written["tables"][4]["experiments"][0]["gpu_hours_per_run"] == pytest.approx(300 / 3600)
    assert written["tables"][4]["hours"] == {
        "prepare_data": 0.0,
        "train": pytest.approx(4 * 300 / 3600, abs=1e-4),
        "evaluate": 0.0,
    }  # no rates: neither preparation nor evaluation estimated

    def broken_dump(data, fh, **kwargs):
        fh.write('{"runs": ')
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr("circle_repro.io.json.dump", broken_dump)
    with pytest.raises(RuntimeError):
        planning.write_plan(plan, out)
    assert json.loads(out.read_text()) == written  # the old file is whole
    assert [p.name for p in out.parent.iterdir()] == ["plan.json"]  # no temporary file left


def test_cli_prints_every_table_and_writes_the_json(params_file, throughput_file, rates_file, tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["plan", "--params", str(params_file), "--throughput", str(throughput_file), "--rates", str(rates_file),
            "--data-root", str(tmp_path / "d")]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 2  # cub_iters' runtime_min 4 is refused, after the plan is printed
    captured = capsys.readouterr()
    printed = captured.out
    gpu_hours = 4 * 300 / 3600 + 1010 * 64 * 2 / 1600 / 3600
    assert printed.startswith(f"Plan for profile test: 6 runs, {gpu_hours:.2f} GPU-hours of training")
    assert "GPU throughput: Test GPU, amp bf16, batch 128" in printed
    assert (
        "circle-repro plan: error: profile test: job(s) exceed their declared resources: train cub_iters (needs 8 min"
        in captured.err
    )
    evaluation = 4 * (2 * 5924 / 1000 + 2 * 5924**2 / 1e4) / 3600
    preparation = 11788 / 500 / 3600
    assert (
        f"  hours (all jobs, wall): preparation {preparation:.2f} h, training {4 * 300 / 3600:.2f} h, evaluation {evaluation:.2f} h"
        in printed
    )
    assert re.search(
        r"^  evaluate cub_iters +4 +117\.2 +180 +10000 +4 +1 +1,000 +decode on 4 CPUs +yes$", printed, flags=re.M
    )
    assert re.search(r"^  train cub_iters +4 +5\.0 +4 .* EXCEEDS: needs 8 min", printed, flags=re.M)
    assert "table1: no experiment in profile test" in printed
    assert f"table5: 4 runs, {4 * 300 / 3600:.2f} GPU-hours; disk: data download 1.1 GiB" in printed
    assert re.search(
        r"^  cub_iters +bn_inception +4 +1 +3,000 it x 80 x 1 GPU +800 +0\.08 +0\.33 ", printed, flags=re.M
    )
    assert "table4: 2 runs" in printed and "+ 1 experiment(s) not estimated" in printed
    assert "note market_face_backbone: time not estimated: no throughput measured for iresnet34" in printed
    assert "data market1501 (manual, size not declared): MISSING: " in printed
    written = json.loads(out.read_text())
    assert written["profile"] == "test" and list(written["exceeding"]) == ["train cub_iters"]
    assert written["tables"][4]["hours"] == {"prepare_data": pytest.approx(preparation, abs=1e-4),
                                             "train": pytest.approx(4 * 300 / 3600, abs=1e-4),
                                             "evaluate": pytest.approx(evaluation, abs=1e-4)}  # fmt: skip

    params = yaml.safe_load(params_file.read_text())
    params["experiments"]["cub_iters"]["resources"]["runtime_min"] = 8
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert main(argv) == 0 and "EXCEEDS" not in capsys.readouterr().out

    assert main([*argv[:3], "--throughput", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: throughput file not found" in capsys.readouterr().err


# --- Actual hours: Snakemake benchmark files ------------------------------------------------------

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:00\t{rss}\t0\t0\t0\t0.00\t0.00\t0.00\t0.00\n" for s, rss in rows))
    return path


def test_benchmark_tsv_rows_are_summed(tmp_path):
    one = planning.read_benchmark(_benchmark(tmp_path / "one.tsv", (1800.25, 512.5)))
    assert one.seconds == 1800.25 and one.max_rss_mb == 512.5
    repeated = planning.read_benchmark(_benchmark(tmp_path / "two.tsv", (10.0, 100.0), (20.5, "NA")))
    assert repeated.seconds == 30.5 and repeated.max_rss_mb == 100.0
    (tmp_path / "bad.tsv").write_text("seconds\n12\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: not a Snakemake benchmark file"):
        planning.read_benchmark(tmp_path / "bad.tsv")


def test_actual_hours_per_table_from_the_rules_benchmark_paths(params_file, tmp_path):
    study = load_study(params_file)
    root = tmp_path / "work"
    train = layout.TRAIN_BENCHMARK.format
    _benchmark(root / train(experiment="cub_iters", loss="CircleLoss", seed=0), (1800, 100))
    _benchmark(root / train(experiment="cub_iters", loss="Triplet", seed=1), (900, 100))
    _benchmark(root / layout.EVALUATE_BENCHMARK.format(experiment="cub_iters", loss="Triplet", seed=1), (360, 100))
    _benchmark(root / layout.DATA_BENCHMARK.format(dataset="cub200"), (720, 100))
    _benchmark(root / train(experiment="market_epochs", loss="CircleLoss", seed=0), (3600, 100))  # 2 GPUs
    garbage = root / train(experiment="market_face_backbone", loss="AM-Softmax", seed=0)
    garbage.parent.mkdir(parents=True)
    garbage.write_text("garbage\n")

    actual = planning.actual_hours(study, root)
    assert set(actual) == {"table1", "table2", "table3", "table4", "table5"}
    t5, t4 = actual["table5"], actual["table4"]
    assert (t5.runs, t5.runs_measured) == (4, 2)
    assert t5.train_hours == pytest.approx(0.75) and t5.train_gpu_hours == pytest.approx(0.75)
    assert t5.evaluate_hours == pytest.approx(0.1) and t5.data_hours == pytest.approx(0.2)
    assert (t4.runs, t4.runs_measured, t4.train_hours, t4.train_gpu_hours) == (2, 1, 1.0, 2.0)
    assert t4.unreadable == (str(garbage),)
    assert actual["table1"].runs == 0 and planning.actual_hours(study, None)["table5"].runs_measured == 0


def test_the_rules_write_benchmarks_where_the_plan_reads_them():
    """The rules take their benchmark paths from circle_repro.layout, the one place that names them."""
    rules = {path.stem: path.read_text() for path in (REPO_ROOT / "workflow" / "rules").glob("*.smk")}
    declared = {
        name: re.search(r"^    benchmark:\n        (.+?)$", text, flags=re.M).group(1)
        for name, text in rules.items()
        if name in ("train", "evaluate", "data")
    }
    assert declared == {
        "train": "layout.TRAIN_BENCHMARK",
        "evaluate": "layout.EVALUATE_BENCHMARK",
        "data": "layout.DATA_BENCHMARK",
    }
    assert layout.TRAIN_BENCHMARK == "logs/benchmarks/train/{experiment}/{loss}/seed{seed}.tsv"


def test_report_section_puts_planned_beside_actual(params_file, throughput_file, rates_file, tmp_path):
    study = load_study(params_file)
    root = tmp_path / "work"
    _benchmark(root / layout.TRAIN_BENCHMARK.format(experiment="cub_iters", loss="CircleLoss", seed=0), (1800, 1))
    blocks = compute_section(study, throughput_file, root, None)
    (table,) = [block for block in blocks if isinstance(block, Table)]
    frame = table.frame
    assert frame.loc["Table 5", "planned GPU-h (training)"] == f"{4 * 300 / 3600:.2f}"
    assert frame.loc["Table 5", "actual GPU-h (training)"] == "0.50"
    assert frame.loc["Table 5", "runs with a benchmark file"] == "1 of 4"
    assert frame.loc["Table 5", "actual wall time h:mm:ss (train / evaluate / data)"] == "0:30:00 / 0:00:00 / 0:00:00"
    assert frame.loc["Table 4", "actual GPU-h (training)"] == "not run"
    assert frame.loc["Table 4", "planned GPU-h (training)"].endswith("+ 1 not estimated")
    assert frame.loc["Table 1", "planned GPU-h (training)"] == "no experiment"
    notes = " ".join(block.text for block in blocks if isinstance(block, Paragraph))
    assert (
        "Test GPU" in notes
        and "market_face_backbone: time not estimated: no throughput measured for iresnet34" in notes
    )
    assert "compute only" in notes and frame.loc["Table 4", "planned GPU-h (training)"].startswith(
        f"{1010 * 64 * 2 / 2000 / 3600:.2f}"
    )

    with_rates = compute_section(study, throughput_file, root, None, rates_file)
    (table,) = [block for block in with_rates if isinstance(block, Table)]
    assert table.frame.loc["Table 4", "planned GPU-h (training)"].startswith(
        f"{1010 * 64 * 2 / 1600 / 3600:.2f}"
    )  # data-bound

    missing = compute_section(study, tmp_path / "nope.json", root, None)
    assert "nope.json not found: nothing estimated" in missing[1].text


# --- The rates file copies its figures from the benchmark results it names ------------------------


def _decode_results(source: str) -> dict[tuple[str, str, str], float]:
    """(section title, row label, column) -> figure of a benchmarks/data_decode.py result file; columns:
    ``images/s`` (the median) and, where the file has it, ``images/CPU-s``."""
    figures, section = {}, None
    for line in (REPO_ROOT / source).read_text().splitlines():
        if line.startswith("== "):
            section = line[3:].split(",")[0]
        elif "|" in line and section is not None and not line.startswith(("loader ", "source ")):
            cells = [cell.strip() for cell in line.split("|")]
            figures[section, cells[0], "images/s"] = float(cells[1].split("[")[0])
            if len(cells) >= 4:
                figures[section, cells[0], "images/CPU-s"] = float(cells[3])
    return figures


def test_job_rates_are_the_benchmark_results_they_cite():
    data = yaml.safe_load((REPO_ROOT / "benchmarks/job_rates.yaml").read_text())
    rates = planning.load_rates(DEFAULT_RATES)
    for section, loaded in (("decode", rates.decode_per_core), ("preparation", rates.preparation_per_core)):
        source = data[section]["source"].split()[0]
        assert source.startswith("benchmarks/results/data_decode")
        results = _decode_results(source)
        for style, entry in data[section]["per_core_images_per_s"].items():
            title, label = (part.strip() for part in entry["row"].split("|")[0].split("..."))
            figure = results[title[3:], label, data[section]["column"]]
            assert title.startswith("== ") and figure == loaded[style], (section, style)
    assert set(rates.decode_per_core) == {"face", "reid", "retrieval", "mnist"}  # every transform style
    # a rehearsal's table: each row's fields (rule, job, images, seconds, img/s) are those of one line of the source
    section = data["preparation_by_dataset"]
    lines = [line.split() for line in (REPO_ROOT / section["source"].split()[0]).read_text().splitlines()]
    for dataset, entry in section["per_core_images_per_s"].items():
        fields = entry["row"].split()
        assert fields in [line[:5] for line in lines], dataset
        assert fields[:2] == ["prepare_data", dataset] and float(fields[4]) == rates.preparation_by_dataset[dataset]
    assert set(rates.preparation_by_dataset) <= set(load_sources())
    metric_row = next(
        line
        for line in (REPO_ROOT / "benchmarks/results/evaluation_sop_cpu_2threads.txt").read_text().splitlines()
        if line.startswith("SOP R@") and " ours " in line
    )
    seconds, _, rss = metric_row.split()[3:6]
    assert (float(seconds), float(rss)) == (rates.metric.seconds, rates.metric.peak_rss_mb)
    assert rates.metric.images == load_sources()["sop"].expected_counts["test_images"]
