"""circle-repro: the reference reproduction pipeline for Circle Loss (Sun et al., CVPR 2020)."""

__version__ = "0.1.0"
