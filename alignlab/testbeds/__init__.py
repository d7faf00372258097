"""Small reproducible testbeds: the IFT paper's Frozen Lake toy (`frozenlake`) and the TDPO paper's
controlled-sentiment reward-KL frontier (`sentiment`), each runnable on a CPU in minutes. Library functions only:
their command, `alignlab testbed ...`, is alignlab.cli.testbed."""

from alignlab.testbeds.frozenlake import format_tables, run_frozenlake

__all__ = ["format_tables", "run_frozenlake"]
