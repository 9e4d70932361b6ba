"""Multi-file outputs appear as one generation: a failure between two file writes leaves the old set whole."""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from circle_repro import generations, layout
from circle_repro.data.datasets import image_arrays, mnist5k, prepare_dataset
from circle_repro.data.manifest import read_manifest, verify_prepared
from circle_repro.engine import evaluate
from circle_repro.generations import (
    file_digest,
    recover_folder,
    staged_folder,
    staged_outputs,
    staging_path,
)
from circle_repro.layout import (
    METRICS_FILENAME,
    PER_QUERY_FILENAME,
    ROC_FILENAME,
    SCORES_FILENAME,
    SIMILARITIES_FILENAME,
)
from circle_repro.records import MetricsRecord
from support import REPO_ROOT, InjectedFailure, fail_on_call, snapshot

# --- staged_folder / staged_outputs ------------------------------------------------------------------


@pytest.mark.parametrize("can_exchange", [True, False], ids=["exchange", "two-renames"])
def test_staged_folder_swaps_a_whole_folder_or_leaves_the_old_one(tmp_path, monkeypatch, can_exchange):
    if not can_exchange:
        monkeypatch.setattr(generations, "_exchange", lambda first, second: False)
    target = tmp_path / "set"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(InjectedFailure), staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
        raise InjectedFailure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and snapshot(target) == {"old.txt": b"old"}
    with staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and snapshot(target) == {"new.txt": b"new"}


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "old.txt").write_text("old")
    target.rename(target.with_name("set.previous"))  # killed after moving the old folder aside
    staging_path(target).mkdir()
    recover_folder(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"] and snapshot(target) == {"old.txt": b"old"}


def test_staged_outputs_replace_the_owned_entries_and_keep_the_other_files(tmp_path, monkeypatch):
    target = tmp_path / "reports"
    (target / "figures").mkdir(parents=True)
    (target / "figures" / "stale.png").write_text("old")
    (target / "report.md").write_text("old")
    (target / "snakemake_report.zip").write_text("theirs")
    (target / "link").symlink_to("snakemake_report.zip")
    theirs = (target / "snakemake_report.zip").stat().st_ino
    with pytest.raises(InjectedFailure), staged_outputs(target, ["report.md", "figures"]) as staging:
        (staging / "report.md").write_text("new")
        raise InjectedFailure
    assert snapshot(target) == {"figures/stale.png": b"old", "report.md": b"old", "snakemake_report.zip": b"theirs",
                                 "link": b"theirs"}  # fmt: skip
    monkeypatch.chdir(target)  # "." names the folder too
    with staged_outputs(".", ["report.md", "figures"]) as staging:
        (staging / "figures").mkdir()
        (staging / "figures" / "new.png").write_text("new")
        (staging / "report.md").write_text("new")
    assert snapshot(target) == {"figures/new.png": b"new", "report.md": b"new", "snakemake_report.zip": b"theirs",
                                 "link": b"theirs"}  # fmt: skip
    assert (target / "snakemake_report.zip").stat().st_ino == theirs  # hard-linked, not copied
    assert (target / "link").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_staged_outputs_refuse_a_folder_they_would_have_to_copy(tmp_path):
    target = tmp_path / "reports"
    (target / "notes").mkdir(parents=True)
    (target / "report.md").write_text("old")
    refused = pytest.raises(ValueError, match=r"reports: holds the folder notes, which this step does not write")
    with refused, staged_outputs(target, ["report.md", "figures"]):
        raise AssertionError("the block must not run")
    assert snapshot(target) == {"report.md": b"old"} and not staging_path(target).exists()


# --- the three steps -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sixty_digits():
    images, labels = mnist5k.load_raw()
    keep = np.concatenate([np.flatnonzero(labels == label)[:6] for label in range(10)])
    return images[keep], labels[keep]


@pytest.fixture
def small_mnist(monkeypatch, sixty_digits):
    monkeypatch.setattr(mnist5k, "load_raw", lambda: sixty_digits)


@pytest.mark.parametrize("where", ["an image", "the pairs", "the manifest"])
def test_a_failed_preparation_leaves_the_earlier_one_whole_and_nothing_beside_it(
    tmp_path, monkeypatch, small_mnist, where
):
    out = tmp_path / "prepared" / "mnist5k"
    prepare_dataset("mnist5k", out, train_classes=[0, 1, 2, 3, 4], test_classes=[5, 6, 7, 8, 9], verification_pairs=20)
    before = snapshot(out)
    module, name, call = {
        "an image": (image_arrays.Image.Image, "save", 9),
        "the pairs": (image_arrays, "write_pairs", 1),
        "the manifest": (image_arrays, "write_manifest", 1),
    }[where]
    monkeypatch.setattr(module, name, fail_on_call(getattr(module, name), call))
    with pytest.raises(InjectedFailure):  # a new split: every image path and the manifest would change
        prepare_dataset("mnist5k", out, train_classes=[5, 6, 7, 8, 9], test_classes=[0, 1, 2, 3, 4],
                        verification_pairs=20)  # fmt: skip
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist5k"]  # no staging or aside folder
    verify_prepared(out, "full")
    monkeypatch.undo()
    prepare_dataset("mnist5k", out, train_classes=[5, 6, 7, 8, 9], test_classes=[0, 1, 2, 3, 4], verification_pairs=20)
    assert set(read_manifest(out, split="train")["label"]) == {5, 6, 7, 8, 9}
    verify_prepared(out, "full")
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith((".partial", ".tmp"))]


def _evaluation_outputs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    result = MetricsRecord(
        run_id="e/l/seed0", config_hash="h", metrics={"accuracy": float(rng.random()), "accuracy_std": 0.1}
    )
    per_query = {"ids": np.arange(5), "accuracy": rng.random(5)}
    similarities = {name: rng.random(8) for name in ("s_p", "s_n", "anchor_s_n", "anchor_s_p")}
    roc = {"far": np.array([0.0, 1.0]), "tar": np.array([rng.random(), 1.0]), "threshold": np.array([0.5, 0.1])}
    return result, per_query, similarities, roc


@pytest.mark.parametrize(
    ("owner", "writer", "call"),
    [
        (evaluate, "_write_npz", 1),
        (evaluate, "_write_npz", 2),
        (evaluate, "write_json", 1),
        (MetricsRecord, "write", 1),
        (generations, "_exchange", 1),  # the swap of the whole folder
    ],
)
def test_a_failed_evaluation_write_leaves_the_earlier_evaluation_whole(tmp_path, monkeypatch, owner, writer, call):
    out = tmp_path / "evaluation"
    first = _evaluation_outputs(tmp_path, 0)
    evaluate.write_outputs(out, *first)
    (out / "notes.txt").write_text("the user's")  # not the evaluation's: kept across generations
    before = snapshot(out)
    assert sorted(before) == sorted([METRICS_FILENAME, PER_QUERY_FILENAME, ROC_FILENAME, SCORES_FILENAME,
                                     SIMILARITIES_FILENAME, "notes.txt"])  # fmt: skip
    monkeypatch.setattr(owner, writer, fail_on_call(getattr(owner, writer), call))
    with pytest.raises(InjectedFailure):
        evaluate.write_outputs(out, *_evaluation_outputs(tmp_path, 1))
    assert snapshot(out) == before  # old generation, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation"]  # no staging folder left
    record = json.loads((out / METRICS_FILENAME).read_text())
    assert record["arrays"] == {name: file_digest(out / name) for name in (PER_QUERY_FILENAME, SIMILARITIES_FILENAME)}
    # the headline metrics alone, without the per-fold spread, identifiers or provenance
    assert json.loads((out / SCORES_FILENAME).read_text()) == {"accuracy": record["metrics"]["accuracy"]}
    pd.testing.assert_frame_equal(pd.read_csv(out / ROC_FILENAME), pd.DataFrame(first[3]))
    monkeypatch.undo()
    result, per_query, _, _ = _evaluation_outputs(tmp_path, 1)
    evaluate.write_outputs(out, result, per_query, None)  # no identity pairs: no similarities.npz, no ROC
    assert sorted(snapshot(out)) == sorted([METRICS_FILENAME, PER_QUERY_FILENAME, SCORES_FILENAME, "notes.txt"])
    np.testing.assert_array_equal(np.load(out / PER_QUERY_FILENAME)["accuracy"], per_query["accuracy"])


def test_every_declared_output_of_the_evaluate_rule_is_written_by_every_protocol(tmp_path):
    """The rule declares only what each protocol writes (IJB-C has no identity pairs: no similarities.npz)."""
    rule = (REPO_ROOT / "workflow" / "rules" / "evaluate.smk").read_text()
    declared = re.findall(r"wf\.evaluation_file\(layout\.(\w+)\)", rule)
    assert declared and set(declared) <= {name for name in dir(layout) if name.endswith("_FILENAME")}
    result, per_query, _, _ = _evaluation_outputs(tmp_path, 0)
    evaluate.write_outputs(tmp_path / "evaluation", result, per_query, None)
    assert {getattr(layout, name) for name in declared} <= {p.name for p in (tmp_path / "evaluation").iterdir()}


def test_evaluating_into_a_folder_with_a_subfolder_is_refused_before_the_work(tmp_path):
    (tmp_path / "run" / "work").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"run: holds the folder work, which this step does not write"):
        generations.check_outputs_folder(tmp_path / "run", layout.EVALUATION_FILES)


# An evaluation write that SIGKILLs itself just before or after call number `call` of `owner.name`.
_KILLED_EVALUATION = textwrap.dedent("""
    import json, sys
    import numpy as np
    from circle_repro import generations
    from circle_repro.engine import evaluate
    from circle_repro.records import MetricsRecord
    from support import kill_on_call
    spec = json.loads(sys.argv[1])
    owner = {"evaluate": evaluate, "generations": generations, "MetricsRecord": MetricsRecord}[spec["owner"]]
    kill_on_call(owner, spec["name"], spec["call"], spec["when"])
    with np.load(spec["arrays"]) as data:
        arrays = dict(data)
    record = MetricsRecord(run_id="e/l/seed0", config_hash="h", metrics=spec["metrics"])
    similarities = {name: arrays[name] for name in ("s_p", "s_n", "anchor_s_n", "anchor_s_p")}
    evaluate.write_outputs(spec["out"], record, {"ids": arrays["ids"], "accuracy": arrays["accuracy"]}, similarities)
""")
_EVALUATION_KILLS = {  # where: (owner, function, call number, before or after it, which evaluation is left)
    "first array": ("evaluate", "_write_npz", 1, "before", "old"),
    "all written": ("MetricsRecord", "write", 1, "after", "old"),
    "swapped": ("generations", "_exchange", 1, "after", "new"),
}


def _evaluation_is_whole(out):
    """The files of ``out`` are one evaluation's: metrics.json's array digests match the arrays beside it."""
    record = json.loads((out / METRICS_FILENAME).read_text())
    assert record["arrays"] == {name: file_digest(out / name) for name in record["arrays"]}
    assert json.loads((out / SCORES_FILENAME).read_text()) == layout.headline_metrics(record["metrics"])
    return record


@pytest.mark.slow
@pytest.mark.parametrize("where", list(_EVALUATION_KILLS))
def test_a_killed_evaluation_leaves_the_old_evaluation_or_the_new_one_whole(tmp_path, where):
    """SIGKILL at several points of writing an evaluation folder: it holds the earlier evaluation or the new
    one, each whole; the next evaluation removes what the kill left beside it."""
    out = tmp_path / "run" / "evaluation"
    old = _evaluation_outputs(tmp_path, 0)
    evaluate.write_outputs(out, old[0], old[1], old[2])
    before = snapshot(out)
    rng = np.random.default_rng(1)
    arrays = {
        "ids": np.arange(5),
        "accuracy": rng.random(5),
        **{n: rng.random(8) for n in ("s_p", "s_n", "anchor_s_n", "anchor_s_p")},
    }
    np.savez(tmp_path / "arrays.npz", **arrays)
    new_metrics = {"accuracy": 0.25}
    owner, name, call, when, left = _EVALUATION_KILLS[where]
    spec = {"owner": owner, "name": name, "call": call, "when": when, "out": str(out),
            "arrays": str(tmp_path / "arrays.npz"), "metrics": new_metrics}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", _KILLED_EVALUATION, json.dumps(spec)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    if left == "old":
        assert snapshot(out) == before
    else:
        assert _evaluation_is_whole(out)["metrics"] == new_metrics
        with np.load(out / PER_QUERY_FILENAME) as per_query:
            np.testing.assert_array_equal(per_query["accuracy"], arrays["accuracy"])
    evaluate.write_outputs(out, old[0], old[1], old[2])  # the next evaluation cleans up
    assert sorted(p.name for p in out.parent.iterdir()) == ["evaluation"]
    assert _evaluation_is_whole(out)["metrics"] == old[0].metrics


def _wait_for(path, process, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["images.partial", "manifest.parquet", None], ids=["images", "manifest", "swap"])
def test_a_killed_preparation_leaves_the_old_set_or_the_new_one_whole(tmp_path, prepared_mnist5k, repo_params, phase):
    """SIGKILL while the images are written, once the new manifest exists (just before the swap), or at once
    after the staging folder is gone (during the swap or the removal of the old set)."""
    out = tmp_path / "prepared" / "mnist5k"
    shutil.copytree(prepared_mnist5k, out)
    before = snapshot(out)
    swapped = copy.deepcopy(repo_params)
    swapped["datasets"]["mnist5k"] |= {"train_classes": [5, 6, 7, 8, 9], "test_classes": [0, 1, 2, 3, 4]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(swapped))
    command = [sys.executable, "-m", "circle_repro.cli", "data", "prepare", "mnist5k", "--out", str(out),
               "--params", str(tmp_path / "params.yaml")]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = staging_path(out)
    _wait_for(staging, process)
    if phase is None:
        while staging.exists() and process.poll() is None:
            time.sleep(0.001)
    else:
        _wait_for(staging / phase, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the preparation ended before the kill"
    if phase is not None:
        assert snapshot(out) == before
    else:  # killed after the swap: the new set, whole
        assert set(read_manifest(out, split="train")["label"]) == {5, 6, 7, 8, 9}
    verify_prepared(out, "full")
    assert subprocess.run(command, capture_output=True).returncode == 0  # the next preparation cleans up
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist5k"]
    assert set(read_manifest(out, split="train")["label"]) == {5, 6, 7, 8, 9}
    verify_prepared(out, "full")
