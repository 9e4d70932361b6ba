"""An unknown name is answered with the nearest defined ones, not with all of them."""

from circle_repro.config import ConfigError, expand_runs, find_run
from circle_repro.names import unknown_name


def test_a_few_names_are_all_listed_with_the_nearest_first():
    message = unknown_name("loss type", "cirle", ["circle", "triplet", "arcface"])
    assert message == "unknown loss type 'cirle'; did you mean 'circle'?; allowed: arcface, circle, triplet"


def test_many_names_give_only_the_nearest_and_how_many():
    runs = [f"cub/Loss{i}/seed{s}" for i in range(40) for s in range(3)]
    message = unknown_name("run", "cub/Loss7/seed9", runs, "circle-repro runs")
    assert message.startswith("unknown run 'cub/Loss7/seed9'; did you mean 'cub/Loss7/seed")
    assert message.endswith("; 120 are defined (`circle-repro runs` lists them)")
    assert message.count("cub/") == 1 + 5


def test_nothing_near_says_so_without_a_guess():
    assert (
        unknown_name("data set", "imagenet", ["cub200", "sop"]) == "unknown data set 'imagenet'; allowed: cub200, sop"
    )


def test_an_unknown_run_id_suggests_the_run_with_a_typo_fixed(repo_params):
    from circle_repro.config import select_profile

    params = select_profile(repo_params, "paper")
    assert len(expand_runs(params)) > 100
    try:
        find_run(params, "table1_megaface_r34/Sotfmax/seed1")
    except ConfigError as exc:
        assert "did you mean 'table1_megaface_r34/Softmax/seed1'" in str(exc) and str(exc).count("/seed") <= 6
    else:
        raise AssertionError("an unknown run id was accepted")
