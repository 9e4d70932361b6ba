"""``python -m circle_repro.cli``: how torchrun starts one training process per GPU."""

import sys

from circle_repro.cli import main

sys.exit(main())
