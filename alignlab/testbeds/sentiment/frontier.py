"""Reward-vs-KL frontiers (TDPO paper Fig. 3a) and the plots of the testbed (Fig. 3a-d).

A run is a point (KL, reward): mean exact sequence KL(pi_theta || pi_ref) of its samples on the test prefixes and
their mean reward. A method's frontier is its Pareto set: the points that no point of the same method beats
with KL <= and reward > (sorted by KL). The SFT reference (KL 0) belongs to every method's point set, because
every method reaches it (beta -> infinity), so all frontiers start at the same place.

Comparing frontiers A and B (each a Pareto front including the reference): f_X(k) is X's frontier as drawn,
linear between its points (the reward a sweep at finer beta would be expected to reach) and undefined beyond
its last point. On the common range (lo, hi], lo the larger of the two smallest KLs (0 when both include the
reference) and hi the smaller of the two largest, gap(k) = f_A(k) - f_B(k) on 200 evenly spaced KL values. A
dominates B when gap >= 0 everywhere and > 0 somewhere; the summary gives the mean gap (the area between the
curves over the range's width) and the smallest and largest gap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first

Point = tuple[float, float]  # (kl, reward)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points not beaten by another with KL <= and reward > (and not duplicates), sorted by KL ascending."""
    front: list[Point] = []
    for kl, reward in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or reward > front[-1][1]:
            front.append((kl, reward))
    return front


def frontier_reward(front: Sequence[Point], kl: float) -> float:
    """The frontier `front` (sorted by KL, as pareto_front returns) at `kl`, linear between its points; nan
    outside [first KL, last KL]."""
    if not front or kl < front[0][0] or kl > front[-1][0]:
        return math.nan
    for (k0, r0), (k1, r1) in itertools.pairwise(front):
        if k0 <= kl <= k1:
            return r0 if k1 == k0 else r0 + (r1 - r0) * (kl - k0) / (k1 - k0)
    return front[-1][1]


def compare_frontiers(a: Sequence[Point], b: Sequence[Point], *, grid_points: int = 200) -> dict[str, Any]:
    """Gap statistics of frontier a over frontier b on their common KL range (module docstring); a and b are
    point sets (their Pareto fronts are taken here)."""
    if not a or not b:
        raise ValueError("both point sets must be non-empty")
    front_a, front_b = pareto_front(a), pareto_front(b)
    lo = max(front_a[0][0], front_b[0][0])
    hi = min(front_a[-1][0], front_b[-1][0])
    if not hi > lo:
        return {"kl_range": [lo, hi], "points": 0, "dominates": False, "mean_gap": math.nan,
                "min_gap": math.nan, "max_gap": math.nan}
    grid = [lo + (hi - lo) * (i + 1) / grid_points for i in range(grid_points)]
    gaps = [frontier_reward(front_a, k) - frontier_reward(front_b, k) for k in grid]
    return {"kl_range": [lo, hi], "points": len(gaps), "dominates": min(gaps) >= 0 and max(gaps) > 0,
            "mean_gap": sum(gaps) / len(gaps), "min_gap": min(gaps), "max_gap": max(gaps)}


def plot_frontier(path: str | Path, groups: Mapping[str, Sequence[Point]], reference: Point, *, title: str,
                  kl_label: str, reward_label: str) -> Path:
    """Scatter every group's runs, draw its Pareto frontier (from the reference point), mark the reference."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>ph*"
    for i, (label, points) in enumerate(groups.items()):
        color, marker = colors[i % len(colors)], markers[i % len(markers)]
        ax.scatter([k for k, _ in points], [r for _, r in points], color=color, marker=marker, s=28, alpha=0.55,
                   linewidths=0)
        front = pareto_front(list(points) + [reference])
        ax.plot([k for k, _ in front], [r for _, r in front], color=color, marker=marker, markersize=5,
                linewidth=1.8, label=label)
    ax.scatter([reference[0]], [reference[1]], marker="*", s=180, color="black", zorder=5, label="SFT reference")
    ax.set_xlabel(kl_label, fontsize=10)
    ax.set_ylabel(reward_label, fontsize=10)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=-0.02 * max([1.0] + [k for pts in groups.values() for k, _ in pts]))
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_seqkl(path: str | Path, curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], *,
               title: str, xlabel: str) -> Path:
    """Side-by-side panels (one per key of each curve, e.g. forward and reverse SeqKL) of SeqKL over training.

    curves: label -> {panel name -> [(x, y), ...]}; panel names are the y-axis labels.
    """
    path = Path(path)
    panels = list(dict.fromkeys(name for curve in curves.values() for name in curve))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 4.3), dpi=120,
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels):
        for i, (label, curve) in enumerate(curves.items()):
            xy = curve.get(panel, [])
            if xy:
                ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", markersize=3, linewidth=1.6,
                        color=colors[i % len(colors)], label=label)
        ax.set_xlabel(xlabel, fontsize=10)
        ax.set_ylabel(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["compare_frontiers", "frontier_reward", "pareto_front", "plot_frontier", "plot_seqkl"]
