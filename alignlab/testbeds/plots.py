"""Small matplotlib helpers for the testbeds (Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first


def grouped_bar_chart(
    path: str | Path,
    categories: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[Sequence[float]]]],
    *,
    title: str,
    ylabel: str,
    xlabel: str,
) -> Path:
    """Grouped bars with error bars and the individual points drawn on top; writes a PNG and returns its path.

    `series` maps a legend label to (means [C], stds [C], per-point values [C][n]) for the C `categories`.
    """
    path = Path(path)
    n_series = max(len(series), 1)
    width = 0.8 / n_series
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(categories) + 2.0), 4.6), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, (means, stds, points)) in enumerate(series.items()):
        xs = [c + (i - (n_series - 1) / 2) * width for c in range(len(categories))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=label, color=colors[i % len(colors)], alpha=0.85,
               edgecolor="black", linewidth=0.5)
        for x, pts in zip(xs, points):
            ax.scatter([x] * len(pts), pts, s=9, color="black", zorder=3, linewidths=0)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.set_title(title, fontsize=11)
    ax.set_ylim(bottom=0.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["grouped_bar_chart"]
