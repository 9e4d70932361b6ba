"""The report's figures, each saved as a PNG; ``FIGURES`` holds the paper figure and caption of each.

One module per kind of figure (:mod:`.similarities`, :mod:`.gradient_maps`, :mod:`.dynamics`,
:mod:`.sensitivity`), all writing through :func:`.canvas.save_png`. Every figure function takes in-memory
inputs, writes one PNG atomically and returns its path. An empty or incomplete input is a ``ValueError``
that names what is missing. ``load_pair_sample`` reads one run's folder for ``similarity_pairs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from circle_repro.report.figures import canvas  # noqa: F401  (first: it sets the Agg backend)
from circle_repro.report.figures.dynamics import moving_band, training_dynamics
from circle_repro.report.figures.gradient_maps import gradient_maps
from circle_repro.report.figures.sensitivity import (
    PAPER_GAMMAS,
    PAPER_MARGINS,
    SWEPT_PARAMETERS,
    best_over_gamma,
    mean_ci,
    sensitivity,
    sensitivity_figure,
)
from circle_repro.report.figures.similarities import (
    ROC_FIGURE_POINTS,
    PairSample,
    load_pair_sample,
    roc_curves,
    similarity_distributions,
    similarity_pairs,
)


@dataclass(frozen=True)
class FigureSpec:
    """What a figure shows: the paper figure it mirrors and the caption the report prints under it."""

    paper_figure: str | None  # None: no counterpart in the paper
    caption: str


FIGURES: dict[str, FigureSpec] = {
    "similarity_distributions": FigureSpec(
        None,
        "Test-set cosine similarities of random same-class (s_p) and different-class (s_n) pairs "
        "(similarities.npz), one panel per loss. Circle loss aims at s_p > 1 - m and s_n < m.",
    ),
    "gradient_maps": FigureSpec(
        "Fig. 2",
        "Gradient magnitudes of triplet, AM-Softmax and Circle loss for one s_p and one s_n, from the "
        "closed forms (paper Fig. 2, §3.3); white dashed: the decision boundary (a line s_p - s_n = m for triplet "
        "and AM-Softmax, the circle s_n² + (s_p - 1)² = 2m² for Circle). AM-Softmax pushes s_p and s_n "
        "equally everywhere; Circle weights each by its distance from the optimum. The paper does not "
        "state its γ and m; these are params.yaml's report.gradient_maps.",
    ),
    "training_dynamics": FigureSpec(
        "Fig. 4",
        "Mean cosine similarity of same-class (s_p, solid) and different-class (s_n, dashed) pairs in each "
        "training batch over iterations (history.csv). Line: mean of the batch means over a moving window "
        "of iterations and all seeds; band: ± one standard deviation of those values. The paper expects "
        "Circle loss to end with a higher s_p and a lower s_n than AM-Softmax. Unlike the paper's "
        "class-level curves, s_p and s_n here are sample-to-sample similarities, not similarities to "
        "class weights.",
    ),
    "similarity_pairs": FigureSpec(
        "Figs. 1 and 5",
        "The (s_n, s_p) plane per loss. Green: test-set pairs after training, each dot one random "
        "anchor's cosine s_n to a random different-class item against its cosine s_p to a random "
        "same-class item (similarities.npz). Blue: the training trajectory of the batch means "
        "(s_n, s_p) (history.csv), light to dark with iteration. Solid: the Circle decision boundary "
        "s_n² + (s_p - 1)² = 2m² (Eq. 8); dashed: the AM-Softmax line s_p - s_n = m. The paper's Fig. 5 "
        "shows Circle pairs passing a narrow passage and converging more tightly than AM-Softmax.",
    ),
    "sensitivity": FigureSpec(
        "Fig. 3",
        "Sensitivity to the scale γ (left, log scale) and the margin m (right): mean over seeds with "
        "95% t-interval bars (none with one seed); every other setting is the base experiment's, whose own "
        "runs give the points at its γ and m. Right, dashed: each baseline at its best γ. The paper "
        "(MegaFace rank-1, §4.5) sweeps γ over 32 ... 1024 for Circle loss and AM-Softmax and over "
        "{32, 64, 128} for ArcFace (unstable beyond in the authors' implementation), and finds Circle loss "
        "ahead of the best AM-Softmax and the best ArcFace for m in [-0.05, 0.25] of its sweep over [-0.2, 0.3].",
    ),
    "roc_curves": FigureSpec(
        None,
        "Verification ROC from the sampled test-set pairs (similarities.npz): rate of same-class pairs "
        "accepted against rate of different-class pairs accepted (log scale) as the cosine threshold "
        "varies; dotted: chance.",
    ),
}


__all__ = [
    "FIGURES",
    "PAPER_GAMMAS",
    "PAPER_MARGINS",
    "ROC_FIGURE_POINTS",
    "SWEPT_PARAMETERS",
    "FigureSpec",
    "PairSample",
    "best_over_gamma",
    "gradient_maps",
    "load_pair_sample",
    "mean_ci",
    "moving_band",
    "roc_curves",
    "sensitivity",
    "sensitivity_figure",
    "similarity_distributions",
    "similarity_pairs",
    "training_dynamics",
]
