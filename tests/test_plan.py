"""circle-repro plan: hand-computed GPU-hours and disk, missing data, the JSON, the CLI, and the actual hours
read from Snakemake benchmark files."""

import copy
import json
import re

import pandas as pd
import pytest
import yaml

from circle_repro import plan as planning
from circle_repro.cli import main
from circle_repro.config import expand_runs, load_params
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.train import _loop_configs
from circle_repro.report.build import _compute_section
from circle_repro.report.render import Paragraph, Table
from support import REPO_ROOT

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


def _plan(params_file, throughput_file, data_root, checkpoints=False):
    params = load_params(params_file)
    return planning.make_plan(params, planning.load_throughput(throughput_file), data_root, checkpoints=checkpoints)


def _tables(plan):
    return {table.table: table for table in plan.tables}


def test_gpu_hours_are_throughput_times_schedule_times_runs(params_file, throughput_file, tmp_path):
    tables = _tables(_plan(params_file, throughput_file, tmp_path / "data"))
    cub = tables["table5"].experiments[0]
    assert (cub.runs, cub.iterations_per_run, cub.images_per_run, cub.images_per_s) == (4, 3000, 240_000, 800.0)
    assert cub.gpu_hours_per_run == pytest.approx(300 / 3600)
    assert tables["table5"].gpu_hours == pytest.approx(4 * 300 / 3600)

    market, face = tables["table4"].experiments
    assert (market.train_images, market.train_images_from) == (12936, "sources.yaml")
    assert market.iterations_per_run == 10 * 101 and market.images_per_run == 1010 * 64 * 2
    assert market.gpu_hours == pytest.approx(1010 * 64 * 2 / 2000 / 3600)
    assert face.gpu_hours is None and "no throughput measured for iresnet34" in face.notes[0]
    assert tables["table4"].gpu_hours == pytest.approx(market.gpu_hours)
    assert tables["table4"].not_estimated == ("market_face_backbone",)
    assert [t.table for t in tables.values()] == ["table1", "table2", "table3", "table4", "table5"]
    assert not tables["table1"].experiments and tables["table1"].runs == 0


def test_estimates_say_where_they_may_be_off(params_file, throughput_file, tmp_path):
    tables = _tables(_plan(params_file, throughput_file, tmp_path / "data"))
    market = tables["table4"].experiments[0]
    assert "throughput measured at 3x384x128 input; trains at 3x256x128" in market.notes
    cub = tables["table5"].experiments[0]
    assert "estimated 5 min per run exceeds resources.runtime_min 4" in cub.notes  # 300 s on one GPU


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
    assert cub.state == "missing" and cub.missing.startswith("not downloaded: the prepare_data job fetches it (1.1 GiB)")
    assert cub.download_bytes == 1_150_585_339 and tables["table5"].data_bytes == 1_150_585_339
    assert "is manual and not placed: put" in market.missing and "Market-1501-v15.09.15.zip" in market.missing
    assert market.download_bytes is None and tables["table4"].data_size_unknown == ("market1501",)

    placed = data / "raw" / "market1501" / "Market-1501-v15.09.15.zip"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"zip")
    (market,) = _tables(_plan(params_file, throughput_file, data))["table4"].datasets
    assert market.missing is None and market.state == "downloaded" and market.on_disk_bytes == 3


def test_checkpoint_disk_is_weights_twice_plus_checkpoints_with_optimizer_state():
    params = load_params(REPO_ROOT / "params.yaml", "demo")
    experiment = params["experiments"]["demo_verification"]
    assert experiment["train"]["optimizer"]["type"] == "Adam"  # two state tensors per parameter
    runs = {loss: next(r for r in expand_runs(params) if r.experiment == "demo_verification" and r.loss == loss)
            for loss in ("AM-Softmax", "Softmax")}  # fmt: skip
    model = EmbeddingModel("small_cnn", in_channels=1, embedding_dim=64, num_classes=5, loss=experiment["losses"]["AM-Softmax"])
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kept = planning.CHECKPOINTS_KEPT
    assert planning.run_disk_bytes(params, runs["AM-Softmax"], 5) == 2 * weights + kept * (weights + 2 * 4 * trainable)
    # the class-level head has num_classes x embedding_dim float32 weights: 2 weight files + each checkpoint's
    # copy and 2 Adam moments of them
    head = planning.run_disk_bytes(params, runs["AM-Softmax"], 7) - planning.run_disk_bytes(params, runs["AM-Softmax"], 5)
    assert head == 2 * 64 * 4 * (2 + kept * 3)


def test_checkpoints_kept_matches_the_training_config():
    for train in ({"iterations": 10, "optimizer": ADAM}, {"epochs": 2, "optimizer": ADAM}):
        assert _loop_configs(train, 5)["checkpoint"]["max_keep_ckpts"] == planning.CHECKPOINTS_KEPT
    assert planning.optimizer_slots({"type": "SGD", "lr": 0.1}) == 0
    assert planning.optimizer_slots({"type": "SGD", "lr": 0.1, "momentum": 0.9}) == 1


def test_paper_face_tables_count_training_once():
    params = load_params(REPO_ROOT / "params.yaml", "paper")
    trained_by = {name: spec["trained_by"] for name, spec in params["experiments"].items() if "trained_by" in spec}
    if not trained_by:
        pytest.skip("the paper profile has no trained_by experiment")
    plans = {name: planning.plan_experiment(params, name, None, checkpoints=False) for name in trained_by}
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

    def broken_dump(data, fh, **kwargs):
        fh.write('{"runs": ')
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr("circle_repro.io.json.dump", broken_dump)
    with pytest.raises(RuntimeError):
        planning.write_plan(plan, out)
    assert json.loads(out.read_text()) == written  # the old file is whole
    assert [p.name for p in out.parent.iterdir()] == ["plan.json"]  # no temporary file left


def test_cli_prints_every_table_and_writes_the_json(params_file, throughput_file, tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["plan", "--params", str(params_file), "--throughput", str(throughput_file), "--data-root", str(tmp_path / "d")]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"Plan for profile test: 6 runs, {4 * 300 / 3600 + 1010 * 64 * 2 / 2000 / 3600:.2f} GPU-hours")
    assert "Throughput: Test GPU, amp bf16, batch 128" in printed
    assert "table1: no experiment in profile test" in printed
    assert f"table5: 4 runs, {4 * 300 / 3600:.2f} GPU-hours; disk: data download 1.1 GiB" in printed
    assert re.search(r"^  cub_iters +bn_inception +4 +1 +3,000 it x 80 x 1 GPU +800 +0\.08 +0\.33 ", printed, flags=re.M)
    assert "table4: 2 runs" in printed and "+ 1 experiment(s) not estimated" in printed
    assert "note market_face_backbone: no throughput measured for iresnet34" in printed
    assert "data market1501 (manual, size not declared): MISSING: " in printed
    assert json.loads(out.read_text())["profile"] == "test"

    assert main([*argv[:-4], "--throughput", str(tmp_path / "nope.json")]) == 2
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
    params = load_params(params_file)
    root = tmp_path / "work"
    train = planning.TRAIN_BENCHMARK.format
    _benchmark(root / train(experiment="cub_iters", loss="CircleLoss", seed=0), (1800, 100))
    _benchmark(root / train(experiment="cub_iters", loss="Triplet", seed=1), (900, 100))
    _benchmark(root / planning.EVALUATE_BENCHMARK.format(experiment="cub_iters", loss="Triplet", seed=1), (360, 100))
    _benchmark(root / planning.DATA_BENCHMARK.format(dataset="cub200"), (720, 100))
    _benchmark(root / train(experiment="market_epochs", loss="CircleLoss", seed=0), (3600, 100))  # 2 GPUs
    garbage = root / train(experiment="market_face_backbone", loss="AM-Softmax", seed=0)
    garbage.parent.mkdir(parents=True)
    garbage.write_text("garbage\n")

    actual = planning.actual_hours(params, root)
    assert set(actual) == {"table1", "table2", "table3", "table4", "table5"}
    t5, t4 = actual["table5"], actual["table4"]
    assert (t5.runs, t5.runs_measured) == (4, 2)
    assert t5.train_hours == pytest.approx(0.75) and t5.train_gpu_hours == pytest.approx(0.75)
    assert t5.evaluate_hours == pytest.approx(0.1) and t5.data_hours == pytest.approx(0.2)
    assert (t4.runs, t4.runs_measured, t4.train_hours, t4.train_gpu_hours) == (2, 1, 1.0, 2.0)
    assert t4.unreadable == (str(garbage),)
    assert actual["table1"].runs == 0 and planning.actual_hours(params, None)["table5"].runs_measured == 0


def test_the_rules_write_benchmarks_where_the_plan_reads_them():
    """The rules take their benchmark paths from circle_repro.plan, the one place that names them."""
    rules = {path.stem: path.read_text() for path in (REPO_ROOT / "workflow" / "rules").glob("*.smk")}
    declared = {
        name: re.search(r"^    benchmark:\n        (.+?)$", text, flags=re.M).group(1)
        for name, text in rules.items()
        if name in ("train", "evaluate", "data")
    }
    assert declared == {"train": "plan.TRAIN_BENCHMARK", "evaluate": "plan.EVALUATE_BENCHMARK", "data": "plan.DATA_BENCHMARK"}
    assert planning.TRAIN_BENCHMARK == "logs/benchmarks/train/{experiment}/{loss}/seed{seed}.tsv"


def test_report_section_puts_planned_beside_actual(params_file, throughput_file, tmp_path):
    params = load_params(params_file)
    root = tmp_path / "work"
    _benchmark(root / planning.TRAIN_BENCHMARK.format(experiment="cub_iters", loss="CircleLoss", seed=0), (1800, 1))
    blocks = _compute_section(params, throughput_file, root, None)
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
    assert "Test GPU" in notes and "market_face_backbone: no throughput measured for iresnet34" in notes

    missing = _compute_section(params, tmp_path / "nope.json", root, None)
    assert "nope.json not found: nothing estimated" in missing[1].text
