"""Losses of the reproduction; importing this package registers all of them."""

from circle_repro.losses.circle import CircleClassifier, CircleLoss
from circle_repro.losses.registry import LOSSES, build_loss, register_loss
from circle_repro.losses.triplet import TripletMarginLoss

__all__ = [
    "LOSSES",
    "CircleClassifier",
    "CircleLoss",
    "TripletMarginLoss",
    "build_loss",
    "register_loss",
]
