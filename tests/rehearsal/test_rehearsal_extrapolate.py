"""The rehearsal's extrapolation to scale 1, against hand-computed figures."""

from __future__ import annotations

import pytest

from circle_repro.config import Study, select_profile
from circle_repro.data.sources import load_sources
from circle_repro.rehearsal.extrapolate import Extrapolation, extrapolate, full_scale_images, full_scale_seconds
from circle_repro.rehearsal.steps import Step


@pytest.fixture(scope="module")
def paper(repo_params):
    return Study.of(select_profile(repo_params, "paper"))


def test_preparation_and_evaluation_scale_their_measured_rate_to_the_real_count():
    step = Step("prepare_data", "cub200", None, seconds=2.0, images=10)
    assert full_scale_seconds(step, 11788) == pytest.approx(2.0 * 11788 / 10)  # 2,357.6 s
    step = Step("evaluate", "table5_sop/CircleLoss/seed0", "table5_sop", seconds=30.0, images=60)
    assert full_scale_seconds(step, 121004) == pytest.approx(60502.0)  # 0.5 s per image


def test_training_keeps_its_fixed_cost_and_runs_the_schedule_at_the_loop_rate():
    # 40 images at 2 img/s in the loop = 20 s of 30 s: 10 s fixed; 240,000 images at 2/s = 120,000 s
    step = Step(
        "train", "table5_cub200/CircleLoss/seed0", "table5_cub200", seconds=30.0, images=40, loop_images_per_s=2.0
    )
    assert full_scale_seconds(step, 240000) == pytest.approx(10.0 + 120000.0)


def test_full_scale_images_come_from_sources_and_the_paper_schedule(paper):
    sources = load_sources()
    prepare = Step("prepare_data", "market1501", None, 1.0, 1)
    assert full_scale_images(prepare, paper, sources) == 12936 + 3368 + 19732  # train + query + gallery
    train = Step("train", "table5_cub200/CircleLoss/seed0", "table5_cub200", 1.0, 1, 1.0)
    assert full_scale_images(train, paper, sources) == 3000 * 16 * 5  # iterations x P x K, one GPU
    face = Step("train", "table1_megaface_r34/CircleLoss/seed0", "table1_megaface_r34", 1.0, 1, 1.0)
    assert full_scale_images(face, paper, sources) == 182000 * 64 * 2 * 4  # x 4 GPUs
    lfw = Step("evaluate", "table2_lfw_r34/CircleLoss/seed0", "table2_lfw_r34", 1.0, 1)
    assert full_scale_images(lfw, paper, sources) == 12000 * 2 * 2  # lfw.bin images x 2 weights x flip
    cub = Step("evaluate", "table5_cub200/CircleLoss/seed0", "table5_cub200", 1.0, 1)
    assert full_scale_images(cub, paper, sources) == 5924 * 2  # no flip


def test_a_job_exceeds_when_its_runtime_does_not_cover_the_extrapolation_times_the_safety_factor():
    step = Step("prepare_data", "cub200", None, 1.0, 1)
    declared = {"runtime": 60, "mem_mb": 4000, "cpus_per_task": 1}
    assert Extrapolation(step, 100, 40 / 60, declared).exceeds is None  # 40 min x 1.5 = 60 min: covered
    assert Extrapolation(step, 100, 41 / 60, declared).exceeds == (
        "needs 62 min (estimate x 1.5), declares runtime 60"
    )  # 61.5 min


def test_extrapolate_uses_the_declared_resources_of_the_workflow(paper):
    from circle_repro.workflow import prepare_resources

    step = Step("prepare_data", "ms1mv2", None, seconds=6.0, images=5823)
    result = extrapolate(step, paper, load_sources(), None, None)
    assert result.declared == prepare_resources("ms1mv2", None)
    assert result.hours == pytest.approx(6.0 * 5822653 / 5823 / 3600)  # 1.67 h
    assert result.exceeds  # > 60 min x 1.5 on the unestimated floor of 60 min
