"""Gradient magnitudes of the binary losses (paper Fig. 2) from their closed forms."""

from __future__ import annotations

from pathlib import Path

from circle_repro.config import Study
from circle_repro.report.figures import gradient_maps
from circle_repro.report.render import Block, Figure, Heading

_GRADIENT_CAPTION = (
    "Gradient magnitudes of triplet, AM-Softmax and Circle loss for one s_p and one s_n, from the closed forms "
    "(paper Fig. 2, §3.3); white dashed: the decision boundary (a line s_p - s_n = m for triplet and AM-Softmax, the circle "
    "s_n² + (s_p - 1)² = 2m² for Circle). AM-Softmax pushes s_p and s_n equally everywhere; Circle weights each by "
    "its distance from the optimum. The paper does not state its γ and m; these are params.yaml's "
    "report.gradient_maps."
)


def gradient_section(study: Study, figure_dir: Path) -> list[Block]:
    """Fig. 2 at params.yaml's ``report.gradient_maps``; nothing without that key."""
    if "gradient_maps" not in study.report:
        return []
    figure = gradient_maps(study.report["gradient_maps"], figure_dir / "gradient_maps.png")
    return [Heading("Gradients of the binary losses (paper Fig. 2)"), Figure(figure, _GRADIENT_CAPTION)]
