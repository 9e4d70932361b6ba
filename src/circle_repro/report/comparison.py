"""Circle against the best other loss of an experiment, with a paired bootstrap interval over queries."""

from __future__ import annotations

import numpy as np

from circle_repro.config import Study
from circle_repro.losses.registry import paper_loss_id
from circle_repro.report.results import Results, experiment_metrics, per_query_pairs, seed_values
from circle_repro.report.stats import paired_bootstrap


def comparison(results: Results, study: Study, experiment: str) -> str | None:
    """Circle against the best other loss at the experiment's headline metric, with a paired bootstrap
    interval over queries (stats.paired_bootstrap); None without a Circle row or any result."""
    spec = study.experiment(experiment)
    metrics = experiment_metrics(results, experiment)
    circles = [name for name, loss in spec.losses.items() if paper_loss_id(loss.type) == "circle"]
    if not metrics or not circles:
        return None
    headline = metrics[0]
    means = {
        loss: float(np.mean(list(values.values())))
        for loss in spec.losses
        if (values := seed_values(results, experiment, loss, headline))
    }
    circle = next((name for name in circles if name in means), None)
    others = [name for name in means if name not in circles]
    if circle is None or not others:
        missing = "no Circle loss row" if circle is None else "no other loss"
        return f"No comparison at {headline}: {missing} has results."
    best = max(others, key=means.__getitem__)
    seeds, first, second, missing = per_query_pairs(
        results.of(experiment, circle), results.of(experiment, best), headline
    )
    lead = f"{circle} minus the best other loss ({best}) at {headline}"
    if not seeds:
        return (
            f"{lead}: {100 * (means[circle] - means[best]):+.2f} points (seed means); no paired interval: "
            f"per-query results are missing for {', '.join(missing) or 'every seed'}."
        )
    settings = study.report["bootstrap"]
    interval = paired_bootstrap(first, second, resamples=settings["resamples"], seed=settings["seed"])
    unit = "queries" if spec.evaluation["protocol"] == "retrieval" else "pairs"
    per_seed = ", ".join(
        f"{100 * (a.mean() - b.mean()):+.2f} (seed {s})" for s, a, b in zip(seeds, first, second, strict=True)
    )
    if interval.contains(0.0):
        verdict = "The interval includes 0: the difference is within noise."
    else:
        direction = "better" if interval.estimate > 0 else "worse"
        verdict = f"The interval excludes 0: {circle} is {direction} than {best} beyond query-sampling noise."
    text = (
        f"{lead}: {100 * interval.estimate:+.2f} points over {len(seeds)} seed(s) × {len(first[0]):,} {unit} "
        f"(per seed: {per_seed}); 95 % paired bootstrap interval [{100 * interval.low:+.2f}, "
        f"{100 * interval.high:+.2f}] from {settings['resamples']:,} resamples of the {unit} within each seed, "
        "the same draw for both losses. "
        f"{verdict} Seed-to-seed variation is not in this interval; it shows in each cell's interval over seeds."
    )
    if missing:
        text += f" Left out for lack of per-query results: {', '.join(missing)}."
    return text
