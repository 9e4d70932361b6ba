"""The paper's Fig. 2 from the losses' closed-form gradients."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from circle_repro.report import gradients
from circle_repro.report.figures import canvas


def gradient_maps(settings: Mapping[str, Mapping[str, float]], path: str | Path, resolution: int = 201) -> Path:
    """The paper's Fig. 2: |dL/ds_p| and |dL/ds_n| of triplet, AM-Softmax and Circle over the
    (s_n, s_p) plane, each with its decision boundary (white dashed)."""
    missing = [name for name in ("triplet", "am_softmax", "circle") if name not in settings]
    if missing:
        raise ValueError(f"gradient_maps needs settings for {missing}; got {sorted(settings)}")
    axis = np.linspace(0, 1, resolution)
    s_n, s_p = np.meshgrid(axis, axis)
    panels = [
        ("triplet", gradients.triplet(s_n, s_p, **settings["triplet"]), gradients.line_boundary, settings["triplet"]),
        (
            "AM-Softmax",
            gradients.am_softmax(s_n, s_p, **settings["am_softmax"]),
            gradients.line_boundary,
            settings["am_softmax"],
        ),
        ("Circle", gradients.circle(s_n, s_p, **settings["circle"]), gradients.circle_boundary, settings["circle"]),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(11, 7), constrained_layout=True)
    for column, (name, (grad_n, grad_p), boundary, params) in enumerate(panels):
        label = ", ".join(f"{'γ' if key == 'gamma' else key}={value:g}" for key, value in params.items())
        for row, (grad, which) in enumerate(((grad_p, "s_p"), (grad_n, "s_n"))):
            ax = axes[row, column]
            image = ax.imshow(grad, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", aspect="equal")
            ax.plot(axis, boundary(axis, params["m"]), "w--", linewidth=1.5)
            title = f"{name} ({label})\n|∂L/∂{which}|" if row == 0 else f"|∂L/∂{which}|"
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="s_n", ylabel="s_p", title=title)
            figure.colorbar(image, ax=ax, shrink=0.8)
    return canvas.save_png(figure, path, dpi=100)


__all__ = ["gradient_maps"]
