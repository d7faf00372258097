"""`python -m alignlab.cli ...` (and `accelerate launch -m alignlab.cli train ...`): the `alignlab` command."""

import sys

from alignlab.cli import main

sys.exit(main())
