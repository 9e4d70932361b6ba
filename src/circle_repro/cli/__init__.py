"""The one entry point: ``circle-repro <verb> ...`` (:mod:`.parser` builds the verbs, :mod:`.commands` runs
them). A user's mistake exits with status 2 and a one-paragraph message, never a traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from circle_repro.cli.parser import build_parser
from circle_repro.config import ConfigError
from circle_repro.data.archive import ArchiveError
from circle_repro.data.download import DownloadError
from circle_repro.data.manifest import ManifestError
from circle_repro.engine.errors import CheckpointError, Terminated, TrackingStoreUnreachable
from circle_repro.engine.tracking import disable_telemetry, quiet_artifact_transfers

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input exits with status 2 and a one-paragraph message, not a traceback."""
    disable_telemetry()
    quiet_artifact_transfers()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (
        ConfigError,
        ManifestError,
        FileNotFoundError,
        ValueError,
        CheckpointError,
        TrackingStoreUnreachable,
        ArchiveError,
        DownloadError,
    ) as exc:
        print(f"circle-repro {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        reason = "terminated (SIGTERM); started again, the run resumes from its last checkpoint"
        print(f"circle-repro {args.verb}: {reason}", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0
