"""Small reproducible testbeds: the IFT paper's Frozen Lake toy (`frozenlake`) and the TDPO paper's
controlled-sentiment reward-KL frontier (`sentiment`), each runnable on a CPU in minutes."""

from alignlab.testbeds.frozenlake import format_tables, main, run_frozenlake

__all__ = ["format_tables", "main", "run_frozenlake"]
