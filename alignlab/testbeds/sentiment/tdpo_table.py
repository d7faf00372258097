"""TDPO's Table 1 (Zeng et al. 2024, "Token-level Direct Preference Optimization", arXiv 2404.11999, Sec. 5,
Table 1: "Alignment: Accuracy (%)" and "Diversity: Entropy" of f-DPO (forward KL), DPO, TDPO1 and TDPO2) on the
controlled-sentiment miniature's SFT reference, classifier and pairs (pipeline.load_stages), over several seeds.

Settings (the papers' defaults): beta 0.1 for every method, TDPO2's alpha 0.5, f-DPO with the forward KL; the
learning rate, steps and batch are the sentiment sweep's, shared and not tuned per method. A seed sets the
training data order and the evaluation sampling; the stages (reference, classifier, pairs) are shared by all
seeds, as the paper's SFT model and data are.

Alignment accuracy. Neither paper's code defines it; its likely reading is the fraction of held-out pairs whose
chosen response gets the higher implicit reward. Held-out pairs: the training pairs' procedure (k samples of the
reference per prefix, classifier best vs worst) on the test prefixes, which no run trains on. Two rewards, from
the trainer's evaluation after the last step (strict >):
  accuracy      the method's own reported reward: beta*Delta (DPO), beta*f'(exp(Delta)) (f-DPO), beta*(Delta + K)
                with K the forward sequence KL (TDPO1/2) -- what TDPO's code logs as rewards_eval/accuracies
  accuracy_dpo  DPO's implicit reward beta*Delta for every method, Delta = log pi_theta - log pi_ref (one scale)
  also          ranking accuracy R = 1[log pi_theta(y_w) > log pi_theta(y_l)] (arXiv 2405.19534's Def. 2.3)
Entropy. The mean predictive entropy -sum_v pi_theta(v|s_t) log pi_theta(v|s_t) over generated tokens (nats), of
`eval_samples` samples per test prefix at temperature 1, top_k 0, top_p 0.95 (f-DPO's HH generation setting at
temperature 1); also unigram/bigram entropy and distinct-1/2 of the words, reward and KL(pi_theta || pi_ref).
Every number is reported as mean and sample standard deviation over seeds.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alignlab.assets import load_tokenizer
from alignlab.cache import content_key, write_atomically, write_json_atomically
from alignlab.diagnostics.diversity import ngram_entropy
from alignlab.errors import AlignlabError, ConfigError
from alignlab.losses.registry import get_method
from alignlab.testbeds.sentiment.pipeline import (
    METHOD_LABELS,
    SentimentConfig,
    build_pairs,
    console_log,
    json_safe,
    load_lm,
    load_stages,
    run_config,
    run_name,
    sample_and_score,
    sample_metrics,
    train_run,
)
from alignlab.train.metrics import read_metrics

PAPER = "arXiv 2404.11999, Table 1"
TABLE_METHODS = ("fdpo", "dpo", "tdpo1", "tdpo2")  # the paper's row order
# the columns averaged over seeds: from the trainer's final evaluation on held-out pairs, then from the samples
EVAL_METRICS = {"accuracy": "eval/rewards/accuracies", "accuracy_dpo": "eval/rewards/dpo_accuracy",
                "ranking_accuracy": "eval/ranking/accuracy", "eval_loss": "eval/loss",
                "kl_chosen": "eval/kl/chosen", "kl_rejected": "eval/kl/rejected"}
SAMPLE_METRICS = ("entropy", "entropy_1", "entropy_2", "distinct_1", "distinct_2", "reward", "kl", "length")


@dataclass(frozen=True)
class TdpoTableConfig:
    """The table's settings; `stages` holds the sentiment pipeline's (out directory, stage seed, models, data,
    pair sampling, test prefixes), shared with `alignlab testbed sentiment` so one directory serves both."""

    stages: SentimentConfig = field(default_factory=SentimentConfig)
    methods: tuple[str, ...] = TABLE_METHODS
    seeds: int = 3
    beta: float = 0.1
    alpha: float = 0.5
    steps: int = 48
    lr: float = 5e-4
    batch_size: int = 16
    eval_samples: int = 4
    top_p: float = 0.95

    def validate(self) -> TdpoTableConfig:
        """Raise ConfigError naming the option of the first invalid setting; return self."""
        self.stages.validate()
        unknown = [m for m in self.methods if m not in TABLE_METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods: '{','.join(unknown) or ','.join(self.methods) or '(empty)'}' is not a "
                              f"list of distinct methods from {', '.join(TABLE_METHODS)}")
        if self.seeds < 2:
            raise ConfigError(f"--seeds must be >= 2 (a standard deviation needs two runs); got {self.seeds}")
        for name in ("steps", "batch_size", "eval_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(self, name)}")
        for name in ("beta", "lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"--{name} must be a number > 0; got {value}")
        if not 0 < self.alpha <= 10:
            raise ConfigError(f"--alpha must be in (0, 10] (TDPO2's alpha); got {self.alpha}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1]; got {self.top_p}")
        return self

    def run_stages(self, seed: int | None = None) -> SentimentConfig:
        """The SentimentConfig of one run: the stages with this table's steps, batch, learning rate and, when
        given, the run's seed (the stages themselves are always built with stages.seed)."""
        return replace(self.stages, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                       seed=self.stages.seed if seed is None else seed)

    def run_seeds(self) -> list[int]:
        """The training seeds: stages.seed, stages.seed + 1, ..."""
        return [self.stages.seed + i for i in range(self.seeds)]


SMOKE = {"seeds": 2, "steps": 4, "batch_size": 4, "eval_samples": 2}


def _alpha(method: str, alpha: float) -> float | None:
    return alpha if "tdpo_alpha" in get_method(method).param_keys() else None


def _sample_row(records: Sequence[dict[str, Any]], rewards: Sequence[float]) -> dict[str, float]:
    metrics = sample_metrics(records, rewards)
    texts = [r["completion"] for r in records]
    return {**{k: metrics[k] for k in SAMPLE_METRICS if k in metrics},
            "entropy_1": ngram_entropy(texts, 1), "entropy_2": ngram_entropy(texts, 2)}


def _final_eval(run_dir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The trainer's evaluations at the first and the last logged step (held-out pairs)."""
    lines = [line for line in read_metrics(run_dir) if "eval/rewards/accuracies" in line]
    if not lines:
        raise AlignlabError(f"{run_dir}: the run logged no evaluation on the held-out pairs")
    return lines[0], lines[-1]


def train_and_measure(cfg: TdpoTableConfig, assets: Any, pairs: Path, heldout: Path, method: str, seed: int,
                      judge: Any, ref_model: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """One (method, seed) run from pi_ref, evaluated on the held-out pairs and by its samples; cached as JSON
    under out/runs/ (its weights are not kept)."""
    alpha = _alpha(method, cfg.alpha)
    run_cfg = cfg.run_stages(seed)
    base = {**run_config(run_cfg, assets, pairs, method, cfg.beta, alpha), "eval_data": str(heldout),
            "eval_steps": None}
    del base["eval_fraction"]  # every pair trains; evaluation is on the held-out file
    payload = {"experiment": "tdpo-table", "pairs": assets.keys["pairs"], "heldout": assets.keys["heldout_pairs"],
               "base": base, "eval_samples": cfg.eval_samples, "top_p": cfg.top_p,
               "n_eval": len(assets.eval_prefixes)}
    name = f"tdpo-table-{run_name(method, cfg.beta, alpha)}-seed{seed}-{content_key(payload)[:12]}"
    result_path = Path(cfg.stages.out) / "runs" / f"{name}.json"
    if result_path.is_file():
        return {**json.loads(result_path.read_text(encoding="utf-8")), "cached": True}
    log(f"{METHOD_LABELS[method]} seed {seed}: training {cfg.steps} steps")
    start = time.perf_counter()
    run_dir = train_run(base, Path(cfg.stages.out) / "runs" / name)
    train_s = time.perf_counter() - start
    before, after = _final_eval(run_dir)
    final = str(run_dir / "final")
    records, rewards = sample_and_score(load_lm(final), load_tokenizer(final), assets.eval_prefixes, judge,
                                        ref_model, n=cfg.eval_samples, max_new_tokens=cfg.stages.max_new_tokens,
                                        seed=seed + 1, top_p=cfg.top_p)
    result = {"method": method, "beta": cfg.beta, "alpha": alpha, "seed": seed,
              **{k: after.get(key, math.nan) for k, key in EVAL_METRICS.items()},
              "reference_ranking_accuracy": before.get("eval/ranking/accuracy", math.nan) if before["step"] == 0
              else math.nan, **_sample_row(records, rewards), "train_s": round(train_s, 1),
              "total_s": round(time.perf_counter() - start, 1), "run_dir": str(run_dir)}
    write_json_atomically(result_path, json_safe(result), indent=1)
    shutil.rmtree(run_dir / "final", ignore_errors=True)  # the numbers are kept; the weights are not needed
    return {**result, "cached": False}


# ---------------------------------------------------------------------------------------------- aggregation
def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "std" (sample standard deviation, ddof 1; None for one value), "n", "values"}."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def aggregate(runs: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method (in `methods` order): mean_std over its runs (seeds) of every EVAL_METRICS / SAMPLE_METRICS
    column."""
    table = {}
    for method in methods:
        rows = [r for r in runs if r["method"] == method]
        if not rows:
            raise ValueError(f"no runs of method '{method}'")
        table[method] = {"label": METHOD_LABELS[method], "alpha": rows[0]["alpha"], "seeds": [r["seed"] for r in rows],
                         **{k: mean_std([r[k] for r in rows]) for k in (*EVAL_METRICS, *SAMPLE_METRICS)}}
    return table


def ordering(table: Mapping[str, Mapping[str, Any]], column: str) -> list[str]:
    """Methods by descending mean of `column`."""
    return sorted(table, key=lambda m: -table[m][column]["mean"])


def findings(table: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The paper's claims checked on the numbers: the orderings by accuracy and by entropy, whether TDPO2 leads
    each, and TDPO2 minus DPO in means and in pooled standard deviations (when both are in the table)."""
    result: dict[str, Any] = {"order_accuracy": ordering(table, "accuracy"),
                              "order_accuracy_dpo": ordering(table, "accuracy_dpo"),
                              "order_entropy": ordering(table, "entropy")}
    sentences = [f"by accuracy: {' > '.join(METHOD_LABELS[m] for m in result['order_accuracy'])}",
                 f"by entropy: {' > '.join(METHOD_LABELS[m] for m in result['order_entropy'])}"]
    if "tdpo2" in table and "dpo" in table:
        for column in ("accuracy", "accuracy_dpo", "entropy"):
            a, b = table["tdpo2"][column], table["dpo"][column]
            pooled = math.sqrt(((a["std"] or 0) ** 2 + (b["std"] or 0) ** 2) / 2)
            diff = a["mean"] - b["mean"]
            result[f"tdpo2_minus_dpo_{column}"] = {"difference": diff,
                                                   "pooled_std": pooled,
                                                   "in_pooled_stds": diff / pooled if pooled > 0 else None}
        result["tdpo2_leads_accuracy"] = result["order_accuracy"][0] == "tdpo2"
        result["tdpo2_leads_entropy"] = result["order_entropy"][0] == "tdpo2"
        acc, ent = result["tdpo2_minus_dpo_accuracy"], result["tdpo2_minus_dpo_entropy"]
        sentences.append(f"TDPO2 − DPO: accuracy {100 * acc['difference']:+.1f} points "
                         f"({_stds(acc['in_pooled_stds'])}), entropy {ent['difference']:+.3f} nats "
                         f"({_stds(ent['in_pooled_stds'])})")
    result["statement"] = "; ".join(sentences) + "."
    return result


def _stds(value: float | None) -> str:
    return "no spread" if value is None else f"{value:+.1f} pooled std"


# ---------------------------------------------------------------------------------------------------- plot
def plot_table(path: str | Path, table: Mapping[str, Mapping[str, Any]], reference: Mapping[str, float], *,
               title: str) -> Path:
    """Two panels: alignment accuracy (own reward and DPO's beta*Delta) and predictive entropy, mean ± std over
    seeds with the seeds as dots, the reference's entropy as a line; written atomically."""
    fig = Figure(figsize=(11, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    methods = list(table)
    x = np.arange(len(methods))
    labels = [table[m]["label"] + ("" if table[m]["alpha"] is None else f" α={table[m]['alpha']:g}")
              for m in methods]
    for offset, column, name, color in ((-0.2, "accuracy", "own reward (TDPO code's accuracy)", "#1f77b4"),
                                        (0.2, "accuracy_dpo", "DPO reward β·Δ", "#ff7f0e")):
        means = [100 * table[m][column]["mean"] for m in methods]
        stds = [100 * (table[m][column]["std"] or 0) for m in methods]
        left.bar(x + offset, means, 0.38, yerr=stds, capsize=3, color=color, alpha=0.8, label=name)
        for i, m in enumerate(methods):
            left.scatter([i + offset] * len(table[m][column]["values"]), [100 * v for v in table[m][column]["values"]],
                         color="black", s=8, zorder=3)
    left.set_ylabel("alignment accuracy on held-out pairs (%)", fontsize=10)
    left.set_ylim(0, 105)
    left.legend(fontsize=8, loc="lower right")
    means = [table[m]["entropy"]["mean"] for m in methods]
    stds = [table[m]["entropy"]["std"] or 0 for m in methods]
    right.bar(x, means, 0.5, yerr=stds, capsize=3, color="#2ca02c", alpha=0.8)
    for i, m in enumerate(methods):
        right.scatter([i] * len(table[m]["entropy"]["values"]), table[m]["entropy"]["values"], color="black", s=8,
                      zorder=3)
    if math.isfinite(reference.get("entropy", math.nan)):
        right.axhline(reference["entropy"], color="black", linestyle="--", linewidth=1, label="SFT reference")
        right.legend(fontsize=8, loc="lower right")
    right.set_ylabel("predictive entropy per generated token (nats)", fontsize=10)
    low = min(means + [reference.get("entropy", means[0])])
    right.set_ylim(max(0.0, low - 0.5), max(m + s for m, s in zip(means, stds)) + 0.2)
    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


# ----------------------------------------------------------------------------------------------------- run
def run_tdpo_table(cfg: TdpoTableConfig, *, console: Any = None, plot: bool = True) -> dict[str, Any]:
    """Build or reuse the sentiment stages and the held-out pairs under cfg.stages.out, run every (method, seed)
    not yet cached, write tdpo_table.json (and tdpo_table.png) there; return the JSON's content plus `files`."""
    cfg.validate()
    started = time.perf_counter()
    log = console_log(console, started)
    out = Path(cfg.stages.out)
    stages = cfg.run_stages()
    assets, pairs, judge, ref_model = load_stages(stages, log)
    heldout = build_pairs(stages, assets, out, log, split="test")
    log("sampling the reference on the test prefixes")
    records, rewards = sample_and_score(ref_model, load_tokenizer(assets.reference), assets.eval_prefixes, judge,
                                        ref_model, n=cfg.eval_samples, max_new_tokens=stages.max_new_tokens,
                                        seed=stages.seed + 1, top_p=cfg.top_p)
    reference = _sample_row(records, rewards)
    runs = [train_and_measure(cfg, assets, pairs, heldout, method, seed, judge, ref_model, log)
            for method in cfg.methods for seed in cfg.run_seeds()]
    reference["ranking_accuracy"] = runs[0]["reference_ranking_accuracy"]
    table = aggregate(runs, cfg.methods)
    summary = findings(table)
    files = []
    if plot:
        files.append(str(plot_table(
            out / "tdpo_table.png", table, reference,
            title=f"TDPO Table 1 on the sentiment miniature ({PAPER}): β={cfg.beta:g}, {cfg.steps} steps × "
                  f"{cfg.batch_size} pairs, lr {cfg.lr:g}, mean ± std over {cfg.seeds} seeds")))
    heldout_summary = json.loads((heldout.parent / "summary.json").read_text(encoding="utf-8"))
    result = {"experiment": "tdpo-table", "paper": PAPER, "config": asdict(cfg),
              "assets": {"policy": assets.policy, "reference": assets.reference,
                         "reward_model": assets.reward_model, "keys": dict(assets.keys)},
              "pairs": str(pairs), "heldout_pairs": str(heldout), "n_heldout_pairs": heldout_summary["pairs"],
              "reference": reference, "table": table, "findings": summary,
              "runs": [{k: v for k, v in r.items() if k != "cached"} for r in runs],
              "runs_cached": sum(bool(r.get("cached")) for r in runs),
              "elapsed_s": round(time.perf_counter() - started, 1)}
    json_path = write_json_atomically(out / "tdpo_table.json", json_safe({**result, "files": files}), indent=1)
    return {**result, "files": [str(json_path), *files]}


def _cell(stat: Mapping[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    std = "-" if stat["std"] is None else f"{scale * stat['std']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {std}"


def format_table(result: Mapping[str, Any]) -> str:
    """The terminal table: one row per method (mean ± std over seeds), the reference's sample columns, the
    findings."""
    header = (f"{'method':<16} {'accuracy %':>13} {'acc. βΔ %':>13} {'R %':>13} {'entropy':>15} "
              f"{'reward':>15} {'KL':>13}")
    lines = [header, "-" * len(header)]
    ref = result["reference"]
    r_ref = ref.get("ranking_accuracy")
    lines.append(f"{'SFT (reference)':<16} {'-':>13} {'-':>13} "
                 f"{'-' if r_ref is None else f'{100 * r_ref:.1f}':>13} {ref['entropy']:15.3f} "
                 f"{ref['reward']:15.3f} {ref['kl']:13.2f}")
    for row in result["table"].values():
        label = row["label"] + ("" if row["alpha"] is None else f" α={row['alpha']:g}")
        lines.append(f"{label:<16} {_cell(row['accuracy'], 100):>13} {_cell(row['accuracy_dpo'], 100):>13} "
                     f"{_cell(row['ranking_accuracy'], 100):>13} {_cell(row['entropy'], 1, 3):>15} "
                     f"{_cell(row['reward'], 1, 3):>15} {_cell(row['kl'], 1, 2):>13}")
    lines.append(f"accuracy: the method's own implicit reward, held-out pairs ({result['n_heldout_pairs']}); "
                 "acc. βΔ: DPO's implicit reward; R: policy log-likelihood ranking")
    lines.append(f"entropy: predictive, nats per generated token (top_p {result['config']['top_p']:g}); "
                 f"mean ± std over {result['config']['seeds']} seeds")
    lines.append(result["findings"]["statement"])
    return "\n".join(lines)


__all__ = ["EVAL_METRICS", "PAPER", "SAMPLE_METRICS", "SMOKE", "TABLE_METHODS", "TdpoTableConfig", "aggregate",
           "findings", "format_table", "mean_std", "ordering", "plot_table", "run_tdpo_table", "train_and_measure"]
