"""Evaluation protocols: exact k-NN search and the metrics built on it.

Import the protocol modules directly, e.g. ``circle_repro.evaluation.retrieval``.
"""
