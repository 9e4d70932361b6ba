"""The Runner of a training run: mmengine's, keeping rank-local state and the log's known harmless warnings out."""

from __future__ import annotations

import logging
from typing import Any

from mmengine.dist import broadcast
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from circle_repro.engine.checkpoint import unwrap_model

HARMLESS_WARNINGS = {
    "Please make sure that the mlflow server is running.": (
        "mmengine's MLflow backend says so for every tracking URI, a local sqlite file included; an unreachable "
        "server fails before the Runner is built (circle_repro.engine.tracking.check_tracking_store)"
    ),
    "Dataset ManifestDataset has no metainfo.": "only the visualizer's drawing of samples reads it; none is drawn",
    '"FileClient" will be deprecated in future.': "mmengine's own CheckpointHook builds one",
    '"HardDiskBackend" is the alias of "LocalBackend"': "the same FileClient of mmengine's CheckpointHook",
}
"""mmengine warnings of every training run that need no action, by the start of their message, with why."""


class HarmlessWarningFilter(logging.Filter):
    """Drops the warnings that :data:`HARMLESS_WARNINGS` lists; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING or not record.getMessage().startswith(tuple(HARMLESS_WARNINGS))


class TrainRunner(Runner):
    """mmengine's Runner, except that rank-local state is not broadcast from rank 0 at start and that the
    log leaves out :data:`HARMLESS_WARNINGS`.

    After ``init_weights`` the Runner broadcasts every parameter and buffer from rank 0, so that all
    ranks start alike. A sharded class-level head's proxies differ between ranks by design (each
    holds its own class shard, drawn from the same RNG as the full matrix): those are the names the
    model registered with DDP as ignored, and they are left alone here too.
    """

    def _init_model_weights(self) -> None:
        model = unwrap_model(self.model)
        if hasattr(model, "init_weights"):
            model.init_weights()
            rank_local = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
            for name, tensor in model.state_dict().items():
                if name not in rank_local:
                    broadcast(tensor)

    def build_logger(self, *args: Any, **kwargs: Any) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        if not any(isinstance(existing, HarmlessWarningFilter) for existing in logger.filters):
            logger.addFilter(HarmlessWarningFilter())
        return logger
