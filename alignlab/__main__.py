"""`python -m alignlab ...`: the `alignlab` command (alignlab.cli.main)."""

import sys

from alignlab.cli import main

sys.exit(main())
