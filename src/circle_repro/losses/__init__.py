"""Losses of the reproduction; importing this package registers all of them."""

from circle_repro.losses.builder import build_loss
from circle_repro.losses.circle import CircleClassifier, CircleLoss
from circle_repro.losses.lifted_structure import LiftedStructureLoss
from circle_repro.losses.margin_softmax import (
    AMSoftmaxClassifier,
    ArcFaceClassifier,
    NormFaceClassifier,
    SoftmaxClassifier,
)
from circle_repro.losses.multi_similarity import MultiSimilarityLoss, MultiSimilarityMiner
from circle_repro.losses.pair_utils import EmptyBatchWarning, PairwiseLoss
from circle_repro.losses.partial_fc import ShardedClassifier
from circle_repro.losses.proxy import ProxyClassifier
from circle_repro.losses.registry import LOSSES, register_loss
from circle_repro.losses.triplet import TripletMarginLoss

__all__ = [
    "LOSSES",
    "AMSoftmaxClassifier",
    "ArcFaceClassifier",
    "CircleClassifier",
    "CircleLoss",
    "EmptyBatchWarning",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "MultiSimilarityMiner",
    "NormFaceClassifier",
    "PairwiseLoss",
    "ProxyClassifier",
    "ShardedClassifier",
    "SoftmaxClassifier",
    "TripletMarginLoss",
    "build_loss",
    "register_loss",
]
