"""Small reproducible testbeds: the IFT paper's Frozen Lake policy-alignment toy (`frozenlake`)."""

from alignlab.testbeds.frozenlake import format_tables, main, run_frozenlake

__all__ = ["format_tables", "main", "run_frozenlake"]
