"""The sentiment testbed's terminal summary of a sweep (``run_sweep``'s result) as text; the CLI prints it."""

from __future__ import annotations

import math
from typing import Any

from alignlab.testbeds.sentiment.pipeline import group_label


def format_table(result: dict[str, Any]) -> str:
    """The terminal summary: one row per run (reference first), then the frontier comparisons."""
    header = f"{'method':<18} {'beta':>6} {'reward':>7} {'KL':>7} {'KL~':>7} {'entropy':>7} {'dist-1':>6} " \
             f"{'dist-2':>6} {'len':>5}"
    lines = [header, "-" * len(header)]

    def row(label: str, beta: Any, r: dict[str, Any]) -> str:
        b = "-" if beta is None else f"{beta:g}"
        return (f"{label:<18} {b:>6} {r['reward']:7.3f} {r['kl']:7.2f} {r['kl_sample']:7.2f} {r['entropy']:7.3f} "
                f"{r['distinct_1']:6.3f} {r['distinct_2']:6.3f} {r['length']:5.1f}")

    lines.append(row("SFT (reference)", None, result["reference"]))
    for r in result["runs"]:
        lines.append(row(group_label(r["method"], r["alpha"]), r["beta"], r))
    lines.append("KL = exact sum_t KL(pi_theta || pi_ref) over generated tokens; KL~ = its single-sample estimate")
    for name, c in result["comparisons"].items():
        if c["points"] == 0 or math.isnan(c["mean_gap"]):
            lines.append(f"{name}: no common KL range")
            continue
        verdict = "dominates" if c["dominates"] else "does not dominate"
        lines.append(f"{name}: {verdict} on KL [{c['kl_range'][0]:.2f}, {c['kl_range'][1]:.2f}]; reward gap "
                     f"mean {c['mean_gap']:+.3f}, min {c['min_gap']:+.3f}, max {c['max_gap']:+.3f}")
    return "\n".join(lines)


__all__ = ["format_table"]
