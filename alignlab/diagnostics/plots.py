"""Plots of the ranking diagnostics (Chen et al. 2024, arXiv 2405.19534, Figures 2 and 3): each a function that
returns the Figure (`*_figure`, which `alignlab report` inlines with figure_data_uri) and one that writes it as a
PNG (`plot_*`, `alignlab diagnose`).

Figures are built on matplotlib's object API (Figure + Agg canvas), so importing this module never changes the
caller's pyplot backend and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alignlab.diagnostics._inputs import as_vector, positive_float, same_shape
from alignlab.diagnostics.flips import GROUPS

GROUP_LABELS = {
    "correct_to_correct": "ref correct, model correct",
    "correct_to_incorrect": "ref correct, model incorrect",
    "incorrect_to_correct": "ref incorrect, model correct (flipped)",
    "incorrect_to_incorrect": "ref incorrect, model incorrect",
}
_GROUP_COLORS = {
    "correct_to_correct": "#1f77b4",
    "correct_to_incorrect": "#ff7f0e",
    "incorrect_to_correct": "#2ca02c",
    "incorrect_to_incorrect": "#d62728",
}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (its directory created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path)
    return path


def figure_data_uri(fig: Figure) -> str:
    """`fig` as an SVG data URI (for an <img> of a self-contained page): text kept as text in a generic sans-serif
    font (no embedded or external fonts), no date stamp, ids salted by content so repeated builds are equal."""
    import base64
    import io

    import matplotlib

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "alignlab"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_loss_vs_ref_logratio(
    path: str | Path,
    ref_logratio: Any,
    dpo_loss: Any,
    correct: Any,
    *,
    beta: float,
    title: str | None = None,
) -> Path:
    """Figure 3 (loss_vs_ref_logratio_figure) written as a PNG at `path`; returns the path."""
    return save_figure(loss_vs_ref_logratio_figure(ref_logratio, dpo_loss, correct, beta=beta, title=title), path)


def loss_vs_ref_logratio_figure(
    ref_logratio: Any,
    dpo_loss: Any,
    correct: Any,
    *,
    beta: float,
    title: str | None = None,
) -> Figure:
    """Figure 3: DPO loss against the reference log-ratio c, coloured by ranking correctness, with f(c).

    ref_logratio: [N] c = log pi_ref(y_l|x) - log pi_ref(y_w|x) (c > 0: the reference ranks the pair wrongly);
    dpo_loss: [N] softplus(-beta (m + c)); correct: [N] bool, the model ranks the pair correctly (m > 0).
    The curve is Theorem 4.1's f(c) = softplus(-beta c): a pair is correct exactly when its point lies below it.
    The loss axis is logarithmic when the losses span more than two decades.
    """
    c = as_vector(ref_logratio, "ref_logratio").numpy()
    loss = as_vector(dpo_loss, "dpo_loss")
    same_shape(("ref_logratio", as_vector(ref_logratio, "ref_logratio")), ("dpo_loss", loss))
    loss = loss.numpy()
    ok = np.asarray(correct, dtype=bool)
    beta = positive_float(beta, "beta")
    fig = Figure(figsize=(7.0, 5.0), dpi=120)
    ax = fig.add_subplot()
    for mask, label, color, marker in (
        (ok, f"model ranks pair correctly ({int(ok.sum())})", "#1f77b4", "o"),
        (~ok, f"model ranks pair incorrectly ({int((~ok).sum())})", "#d62728", "x"),
    ):
        if mask.any():
            ax.scatter(
                c[mask], loss[mask], s=16, alpha=0.75, color=color, marker=marker, label=label, linewidths=1.0
            )
    span = float(c.max() - c.min()) or 1.0
    grid = np.linspace(c.min() - 0.05 * span, c.max() + 0.05 * span, 400)
    threshold = np.logaddexp(0.0, -beta * grid)
    ax.plot(
        grid, threshold, color="black", linewidth=1.6, label=f"f(c) = softplus(-βc), β = {beta:g} (Thm 4.1)"
    )
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    positive = loss[loss > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel(
        "reference log-ratio c = log π_ref(y_l|x) − log π_ref(y_w|x)  (nats; c > 0: reference wrong)"
    )
    ax.set_ylabel("DPO loss  −log σ(β(m + c))")
    ax.set_title(title or f"DPO loss vs reference log-ratio ({c.size} pairs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    return fig


def plot_flip_groups(
    path: str | Path,
    steps: Sequence[int],
    fractions: Mapping[str, Sequence[float]],
    flipped: Sequence[float | None],
    *,
    mean_loss: Mapping[str, Sequence[float | None]] | None = None,
    title: str | None = None,
) -> Path:
    """Figure 2 (flip_groups_figure) written as a PNG at `path`; returns the path."""
    return save_figure(flip_groups_figure(steps, fractions, flipped, mean_loss=mean_loss, title=title), path)


def flip_groups_figure(
    steps: Sequence[int],
    fractions: Mapping[str, Sequence[float]],
    flipped: Sequence[float | None],
    *,
    mean_loss: Mapping[str, Sequence[float | None]] | None = None,
    title: str | None = None,
) -> Figure:
    """Figure 2: share of pairs in each flip group (flips.GROUPS) against the training step.

    steps: [S] checkpoint steps; fractions[group]: [S] share of all pairs; flipped: [S] share of the initially
    wrong pairs the model now ranks correctly (None where the reference ranks every pair correctly).
    mean_loss[group] (optional): [S] mean DPO loss per group (None for an empty group), drawn in a second panel.
    """
    x = list(steps)
    panels = 2 if mean_loss is not None else 1
    fig = Figure(figsize=(6.5 * panels, 4.8), dpi=120)
    ax = fig.add_subplot(1, panels, 1)
    for group in GROUPS:
        ax.plot(
            x,
            list(fractions[group]),
            marker="o",
            markersize=4,
            color=_GROUP_COLORS[group],
            label=GROUP_LABELS[group],
        )
    flip_x = [s for s, f in zip(x, flipped) if f is not None]
    flip_y = [f for f in flipped if f is not None]
    if flip_y:
        ax.plot(
            flip_x,
            flip_y,
            color="black",
            linestyle="--",
            marker="s",
            markersize=4,
            label=f"flipped: share of ref-incorrect pairs now correct (last {flip_y[-1]:.1%})",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of pairs")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Flip groups over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    if mean_loss is not None:
        ax2 = fig.add_subplot(1, panels, 2)
        for group in GROUPS:
            points = [(s, v) for s, v in zip(x, mean_loss[group]) if v is not None]
            if points:
                ax2.plot(
                    *zip(*points),
                    marker="o",
                    markersize=4,
                    color=_GROUP_COLORS[group],
                    label=GROUP_LABELS[group],
                )
        ax2.axhline(math.log(2), color="grey", linestyle=":", linewidth=1.0, label="log 2 (loss at init)")
        ax2.set_xlabel("training step")
        ax2.set_ylabel("mean DPO loss in group")
        ax2.set_title("Mean DPO loss per flip group")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8, loc="best", framealpha=0.9)
    return fig


__all__ = ["GROUP_LABELS", "figure_data_uri", "flip_groups_figure", "loss_vs_ref_logratio_figure", "plot_flip_groups",
           "plot_loss_vs_ref_logratio", "save_figure"]
