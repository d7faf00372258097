"""`alignlab report`: what a training run did, as one self-contained HTML page and the JSON it is drawn from.

`build_report(run_dir)` gathers, into one JSON-ready dict (report.json):
- config: the run's method and hyper-parameters, model, reference, data (and its fingerprint when the model card
  recorded one), optimizer; timing: wall time, steps, median tokens/s (train.run_info);
- curves: every metric of CURVE_GROUPS that metrics.jsonl has, train and eval series;
- flips: the four flip groups over training, from the metrics FlipTracker logged (`--track-flips`) or else by
  scoring the run's checkpoints (diagnose.checkpoint_flips, cached);
- pairs: a seeded subset of the run's pairs (or --data) scored under the final policy and the reference: the
  ranking summary (diagnose.summarize) and, per pair, the log-ratio margin, the reference log-ratio c and the
  DPO loss (Theorem 4.1's plot);
- token_views: the most and least improved pairs (by log-ratio margin) and any requested ones, token by token
  (token_views.pair_token_views through sequence_scores.score_tokens);
- generations (optional): one sample per prompt from the final policy and from the reference.
report_page.render_report_html turns that dict into the page (figures are drawn from it), so the JSON is the
record and the page a view of it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from alignlab.assets import load_tokenizer, resolve_device
from alignlab.assets.models import is_builtin
from alignlab.cache import write_json_atomically, write_text_atomically
from alignlab.data import DataSpec, load_preference_data
from alignlab.diagnostics.callbacks import FLIP_KEYS
from alignlab.diagnostics.diagnose import ScoringOptions, checkpoint_flips, run_data, seeded_subset, summarize
from alignlab.diagnostics.flips import GROUPS
from alignlab.diagnostics.scoring import compute_pair_scores, load_scoring_model
from alignlab.diagnostics.sequence_scores import data_is_paired
from alignlab.diagnostics.token_views import color_scale, find_examples, pair_token_views
from alignlab.errors import ConfigError
from alignlab.losses import dpo_loss
from alignlab.train.checkpoint import list_checkpoints
from alignlab.train.metrics import read_metrics
from alignlab.train.run_info import final_metrics, load_run_config, resolve_run_path, run_timing

REPORT_VERSION = 1
# The page's sections, in order: every page has each heading (a section without data says why).
SECTIONS = ("Configuration", "Training curves", "Ranking and flips", "Per-token views", "Sample generations")
# Metrics drawn over steps, grouped one figure each: (title, metrics.jsonl keys); eval series are "eval/<key>".
CURVE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Loss", ("loss",)),
    ("Reward margin", ("rewards/margins",)),
    ("Rewards of chosen and rejected", ("rewards/chosen", "rewards/rejected")),
    ("Reward accuracy", ("rewards/accuracies", "rewards/dpo_accuracy")),
    ("Ranking accuracy of the policy (raw, length-normalised)", ("ranking/accuracy", "ranking/accuracy_normalized")),
    ("Sequence log-probs", ("logps/chosen", "logps/rejected", "logps/sequence")),
    ("Sequence KL, forward: sum_t KL(ref || policy)", ("kl/chosen", "kl/rejected", "kl/sequence")),
    ("Sequence KL, reverse: sum_t KL(policy || ref)", ("kl_reverse/chosen", "kl_reverse/rejected")),
    ("KL margin (TDPO): forward kl/chosen - kl/rejected", ("kl/margin",)),
    ("NLL per token (SFT)", ("nll/seq_mean",)),
    ("ORPO and CPO terms", ("orpo/nll", "orpo/log_odds_ratio", "cpo/nll")),
    ("IFT", ("ift/lambda", "ift/guess_error_rate")),
    ("Learning rate", ("lr",)),
    ("Gradient norm", ("grad_norm",)),
    ("Throughput (tokens/s)", ("tokens_per_s",)),
    ("Weight norm", ("weight_norm",)),
)


@dataclass(frozen=True)
class ReportOptions:
    """What the report scores beyond the run's own files.

    max_pairs: pairs of the seeded subset scored for the ranking section (and to pick the most and least
    improved); extremes: how many most and how many least improved pairs get a per-token view; pairs: record
    indices that also get one; generate: prompts sampled from the final policy and the reference (0: none);
    max_new_tokens: per sample; checkpoints: score the checkpoints for the flip groups when the run did not track
    flips; flip_pairs: pairs scored per checkpoint then, and max_checkpoints how many checkpoints (evenly spaced,
    the last included; `alignlab diagnose --run` scores them all); seed: the subsets' and the samples' seed;
    scoring: dtype, batch size, device and cache of the scoring; judge: an alignlab.judges spec (or judge) that
    scores the samples: the final model's win rate against the reference (_judge_samples).
    """

    max_pairs: int = 32
    extremes: int = 2
    pairs: tuple[int, ...] = ()
    generate: int = 0
    max_new_tokens: int = 32
    checkpoints: bool = True
    flip_pairs: int = 32
    max_checkpoints: int = 8
    seed: int = 0
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    judge: Any = None

    def check(self) -> None:
        """ConfigError naming the first option out of range."""
        for name, least in (("max_pairs", 1), ("extremes", 0), ("generate", 0), ("max_new_tokens", 1),
                            ("flip_pairs", 1), ("max_checkpoints", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"report option {name} must be an integer >= {least}; got {value!r}")
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.pairs):
            raise ConfigError(f"report pairs must be record indices >= 0; got {list(self.pairs)}")
        if self.judge is not None and not self.generate:
            raise ConfigError("report option judge scores the sample generations: set generate >= 1 too")


@dataclass
class ReportResult:
    """What build_report wrote: the page, its JSON, the JSON's content, and notes on what was left out."""

    html_path: Path
    json_path: Path
    data: dict[str, Any]
    notes: list[str]


# ---------------------------------------------------------------------------------------------------------------
# from the run's files


def metric_curves(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The CURVE_GROUPS series that `records` (metrics.jsonl) hold: {"groups": [{"title", "keys"}],
    "series": {key: {"train": {"steps", "values"}, "eval": {...}}}}; a key logged as null (non-finite) is a
    gap, and a group or series with no value is left out."""
    series: dict[str, dict[str, dict[str, list]]] = {}
    for _, keys in CURVE_GROUPS:
        for key in keys:
            for split, name in (("train", key), ("eval", f"eval/{key}")):
                points = [(r["step"], r[name]) for r in records
                          if name in r and isinstance(r.get("step"), int) and _number(r[name])]
                if points:
                    steps, values = zip(*points)
                    series.setdefault(key, {})[split] = {"steps": list(steps), "values": [float(v) for v in values]}
    groups = [{"title": title, "keys": [k for k in keys if k in series]} for title, keys in CURVE_GROUPS]
    return {"groups": [g for g in groups if g["keys"]], "series": series}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def tracked_flip_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The flip groups FlipTracker logged (flips/* keys at each evaluation) as rows shaped like
    diagnose.checkpoint_flips' (step, label, ranking_accuracy, fractions, counts, flipped_fraction, mean_loss)."""
    rows = []
    for r in records:
        if "flips/n_pairs" not in r:
            continue
        mean_loss = {g: r.get(f"flips/{FLIP_KEYS[g]}_mean_loss") for g in GROUPS}
        rows.append({
            "step": r["step"],
            "label": "tracked",
            "n_pairs": int(r["flips/n_pairs"]),
            "ranking_accuracy": r.get("flips/ranking_accuracy"),
            "ref_ranking_accuracy": r.get("flips/ref_ranking_accuracy"),
            "fractions": {g: r.get(f"flips/{FLIP_KEYS[g]}") or 0.0 for g in GROUPS},
            "counts": {g: int(r.get(f"flips/{FLIP_KEYS[g]}_count") or 0) for g in GROUPS},
            "flipped_fraction": r.get("flips/flipped_fraction"),
            "mean_loss": mean_loss if any(v is not None for v in mean_loss.values()) else None,
        })
    return rows


def recorded_fingerprint(run_dir: Path) -> str | None:
    """The data fingerprint the model card (final/README.md) recorded, if any."""
    card = run_dir / "final" / "README.md"
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        meta = ModelCard.load(card).data.to_dict()
    except (OSError, ValueError, yaml.YAMLError):  # a card written by hand, or not YAML: nothing recorded
        return None
    section = meta.get("alignlab")
    value = section.get("data_fingerprint") if isinstance(section, dict) else None
    return value if isinstance(value, str) else None


def _final_model(run_dir: Path, records: Sequence[Mapping[str, Any]]) -> tuple[Path, str] | None:
    """(directory, label) of the run's last model: final/, else its newest checkpoint; None without either."""
    if (run_dir / "final").is_dir():
        return run_dir / "final", "final"
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        step, path = checkpoints[-1]
        return path, f"checkpoint-{step} (no final/: the run has not finished)"
    return None


def _config_section(run_dir: Path, config: Any, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    method, model, data, optim = config.method, config.model, config.data, config.optim
    return {
        "method": method.name,
        "hyper_parameters": {k: v for k, v in dataclasses.asdict(method.params).items() if v is not None},
        "reference_free": not method.record.needs_ref,
        "model": model.name,
        "ref_model": model.ref_model,
        "tokenizer": model.tokenizer,
        "dtype": model.dtype,
        "mixed_precision": model.mixed_precision,
        "lora": {"r": model.lora_r, "alpha": model.lora_alpha} if model.lora else None,
        "data": {
            "train_data": data.train_data or "bundled sample pairs (alignlab/data/samples)",
            "train_split": data.train_split,
            "eval_data": data.eval_data,
            "eval_fraction": data.eval_fraction,
            "max_length": data.max_length,
            "max_prompt_length": data.max_prompt_length,
            "limit": data.limit,
            "fingerprint": recorded_fingerprint(run_dir),
        },
        "optimizer": {
            "optimizer": optim.optimizer, "learning_rate": optim.learning_rate, "lr_scheduler": optim.lr_scheduler,
            "warmup_steps": optim.warmup_steps, "micro_batch_size": optim.micro_batch_size,
            "gradient_accumulation_steps": optim.gradient_accumulation_steps, "max_grad_norm": optim.max_grad_norm,
            "weight_decay": optim.weight_decay,
        },
        "seed": config.run.seed,
        "timing": run_timing(run_dir, records).to_dict(),
        "final_metrics": final_metrics(records),
        "full": config.to_dict(),
    }


# ---------------------------------------------------------------------------------------------------------------
# from the models


def _pairs_and_tokens(
    run_dir: Path, config: Any, *, policy_dir: Path, ref: str, source: str, spec: DataSpec, beta: float,
    options: ReportOptions,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The pairs section, the token views and the generations (None when not asked for)."""
    tokenizer_name = resolve_run_path(run_dir, config, config.model.tokenizer) or str(policy_dir)
    tok = load_tokenizer(tokenizer_name)
    examples, report = load_preference_data(source, tok, spec)
    requested = find_examples(examples, list(options.pairs), source=source)
    subset = seeded_subset(examples, options.max_pairs, options.seed)
    device = resolve_device(options.scoring.device)
    bf16 = options.scoring.bf16
    ref_seed = config.run.seed if is_builtin(ref) else 0
    policy = load_scoring_model(policy_dir, bf16=bf16).to(device)
    reference = load_scoring_model(ref, seed=ref_seed, bf16=bf16).to(device)
    batch = options.scoring.batch_size
    policy_scores = compute_pair_scores(policy, subset, batch_size=batch, dataset=source)
    ref_scores = compute_pair_scores(reference, subset, batch_size=batch, dataset=source)
    summary = summarize(policy_scores, ref_scores, beta=beta)
    losses, _, _ = dpo_loss(policy_scores.chosen_logps, policy_scores.rejected_logps, ref_scores.chosen_logps,
                            ref_scores.rejected_logps, beta=beta)
    policy_margin = policy_scores.chosen_logps - policy_scores.rejected_logps
    ref_margin = ref_scores.chosen_logps - ref_scores.rejected_logps
    per_pair = [{
        "index": int(policy_scores.index[i]),
        "chosen_logps": float(policy_scores.chosen_logps[i]),
        "rejected_logps": float(policy_scores.rejected_logps[i]),
        "ref_chosen_logps": float(ref_scores.chosen_logps[i]),
        "ref_rejected_logps": float(ref_scores.rejected_logps[i]),
        "chosen_tokens": int(policy_scores.chosen_lengths[i]),
        "rejected_tokens": int(policy_scores.rejected_lengths[i]),
        "margin": float(policy_margin[i] - ref_margin[i]),  # log-ratio margin: the DPO implicit reward margin / beta
        "ref_logratio": float(-ref_margin[i]),  # c of Theorem 4.1 (> 0: the reference ranks the pair wrongly)
        "dpo_loss": float(losses[i]),
        "correct": bool(policy_margin[i] > 0),
    } for i in range(len(policy_scores))]
    # the views: requested pairs first, then the most and the least improved of the subset (by margin)
    order = sorted(range(len(per_pair)), key=lambda i: per_pair[i]["margin"], reverse=True)
    chosen: list[tuple[Any, str]] = [(e, "requested") for e in requested]
    seen = {int(e["index"]) for e in requested}
    k = min(options.extremes, max(1, len(order) // 2))  # a pair at both ends is shown once
    picks = [(i, "most improved") for i in order[:k]] + [(i, "least improved") for i in order[::-1][:k]]
    for i, why in picks:
        if per_pair[i]["index"] not in seen:
            seen.add(per_pair[i]["index"])
            chosen.append((subset[i], why))
    views = pair_token_views(policy, reference, tok, [e for e, _ in chosen], why=[w for _, w in chosen])
    token_views = [v.to_dict() for v in views]
    generations = None
    if options.generate:
        generations = _generations(policy, reference, tok, subset, options)
    pairs = {
        "data": source,
        "split": spec.split,
        "n_examples": len(examples),
        "n_dropped": report.n_dropped_empty + report.n_dropped_truncation,
        "n_pairs": len(subset),
        "subset_seed": options.seed,
        "beta": beta,
        "summary": summary,
        "per_pair": per_pair,
    }
    return pairs, token_views, generations


def _generations(policy: Any, reference: Any, tok: Any, subset: Sequence[Mapping[str, Any]],
                 options: ReportOptions) -> list[dict[str, Any]]:
    """One seeded sample per prompt (the first `generate` distinct prompts of the subset) from the policy (scored
    against the reference: log-prob, KL) and from the reference."""
    from alignlab.diagnostics.generation import generate

    prompts: list[str] = []
    for example in subset:
        text = tok.decode(example["prompt_input_ids"], skip_special_tokens=True)
        if text not in prompts:
            prompts.append(text)
        if len(prompts) == options.generate:
            break
    kwargs = {"n": 1, "max_new_tokens": options.max_new_tokens, "seed": options.seed}
    sampled = generate(policy, tok, prompts, ref_model=reference, **kwargs)
    baseline = generate(reference, tok, prompts, **kwargs)
    keep = ("completion", "num_tokens", "finished", "logp", "ref_logp", "kl_forward", "kl_reverse", "entropy")
    rows = [{"prompt": prompt, "policy": {k: p.get(k) for k in keep}, "reference": {k: r.get(k) for k in keep}}
            for prompt, p, r in zip(prompts, sampled, baseline)]
    return rows


def _judge_samples(rows: list[dict[str, Any]], spec: Any, judge: Any, seed: int) -> dict[str, Any]:
    """Judge the sample generations in place and summarise: the final model's win rate against the reference
    with its bootstrap interval (winrate.win_rate: a pairwise judge sees the two in a seeded random order, so
    position bias cancels), and per row the probability that the final model's sample is the better
    ("judge_preference"), plus with a reward judge each sample's reward ("judge_score") and the two means."""
    from alignlab.diagnostics.winrate import win_rate

    prompts = [row["prompt"] for row in rows]
    ours, theirs = [row["policy"]["completion"] for row in rows], [row["reference"]["completion"] for row in rows]
    result = win_rate(ours, theirs, judge, prompts=prompts, seed=seed)
    summary = {"judge": spec if isinstance(spec, (str, Mapping)) else type(judge).__name__,
               "kind": "pairwise" if result.pairwise else "reward", "win_rate": result.win_rate,
               "ci_low": result.ci_low, "ci_high": result.ci_high, "confidence": result.confidence}
    for row, score in zip(rows, result.scores):
        row["judge_preference"] = score
    if not result.pairwise:  # the rewards themselves, which win_rate compared
        for row, mine, base in zip(rows, result.rewards_a, result.rewards_b):
            row["policy"]["judge_score"], row["reference"]["judge_score"] = mine, base
        summary.update(mean_policy=sum(result.rewards_a) / len(rows),
                       mean_reference=sum(result.rewards_b) / len(rows))
    return summary


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    return value


# ---------------------------------------------------------------------------------------------------------------
# the report


def build_report(
    run_dir: str | Path,
    *,
    ref: str | None = None,
    data: str | None = None,
    out: str | Path | None = None,
    options: ReportOptions | None = None,
) -> ReportResult:
    """Write the report of the run in `run_dir`: `out` (default `run_dir`/report.html, replaced if present) and
    the JSON it draws, beside it with the suffix .json. `ref` overrides the run's reference (default: its
    ref_model, else its initial model), `data` the pairs scored (default: the run's eval data, else its training
    data). Sections the run cannot fill (no final model, single-response data, no flips) say why."""
    started = time.perf_counter()
    options = options or ReportOptions()
    options.check()
    judge = None
    if options.judge is not None:  # a bad spec fails here, before any scoring
        from alignlab.judges import load_judge

        judge = load_judge(options.judge, device=options.scoring.device)
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    html_path = Path(out) if out is not None else run_dir / "report.html"
    json_path = html_path.with_suffix(".json")
    if not html_path.parent.is_dir():
        raise ConfigError(f"--out {html_path}: directory {html_path.parent} does not exist")
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    notes: list[str] = []
    beta = float(getattr(config.method.params, "beta", None) or 0.1)
    ref_name = ref or resolve_run_path(run_dir, config, config.model.ref_model or config.model.name)
    payload: dict[str, Any] = {
        "version": REPORT_VERSION,
        "run": str(run_dir),
        "name": run_dir.resolve().name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "config": _config_section(run_dir, config, records),
        "curves": metric_curves(records),
        "flips": None,
        "pairs": None,
        "token_views": None,
        "generations": None,
        "generation_judge": None,
        "reference": ref_name,
        "beta": beta,
        "notes": notes,
    }
    if not records:
        notes.append("metrics.jsonl is missing or empty: no curves")
    final = _final_model(run_dir, records)
    payload["policy"] = str(final[0]) if final else None
    payload["policy_label"] = final[1] if final else None
    source, spec = run_data(config, data)
    paired = data_is_paired(source, split=spec.split, format=spec.format)
    if data is None and config.data.train_data is None and not config.method.record.paired:
        notes.append(f"the run trained {config.method.name} on single responses; its pairs sections score the "
                     f"bundled sample pairs ({Path(source).name}; --data scores others)")
    tracked = tracked_flip_rows(records)
    if tracked:
        payload["flips"] = {"source": "tracked during training (--track-flips)", "reference": "as tracked",
                            "rows": tracked}
    elif not options.checkpoints:
        notes.append("flip groups: the run did not track flips, and checkpoint scoring is off")
    elif not paired:
        notes.append(f"flip groups: {source} holds single responses, not pairs")
    elif final is None:
        notes.append("flip groups: the run has no checkpoint-<step>/ or final/")
    else:
        flips = checkpoint_flips(run_dir, config, beta=beta, max_pairs=options.flip_pairs, seed=options.seed,
                                 options=options.scoring, data=data, max_checkpoints=options.max_checkpoints)
        scored = [row["label"] for row in flips.rows if row["label"] != "reference"]
        payload["flips"] = {"source": f"{len(scored)} checkpoints scored on {flips.n_pairs} pairs of {flips.data}",
                            "reference": flips.reference, "rows": flips.rows, "scored": scored}
    if final is None:
        notes.append("pairs, per-token views and samples: the run has no final/ or checkpoint to score")
    elif not paired:
        notes.append(f"pairs and per-token views: {source} holds single responses; pass --data with pairs")
    else:
        pairs, views, generations = _pairs_and_tokens(
            run_dir, config, policy_dir=final[0], ref=ref_name, source=source, spec=spec, beta=beta,
            options=options)
        payload["pairs"], payload["token_views"], payload["generations"] = pairs, views, generations
        if judge is not None and generations:
            payload["generation_judge"] = _judge_samples(generations, options.judge, judge, options.seed)
        payload["color_scale"] = color_scale(v for view in views for side in ("chosen", "rejected")
                                             for v in view[side]["log_ratio"])
        payload["kl_scale"] = color_scale(v for view in views for side in ("chosen", "rejected")
                                          for v in view[side]["kl_forward"])
    if not options.generate:
        notes.append("sample generations: off (pass --generate N)")
    payload = _clean(payload)
    from alignlab.diagnostics.report_page import render_report_html

    html = render_report_html(payload)
    payload["build_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomically(json_path, payload, indent=1)
    write_text_atomically(html_path, html)
    return ReportResult(html_path, json_path, payload, notes)


__all__ = ["CURVE_GROUPS", "REPORT_VERSION", "SECTIONS", "ReportOptions", "ReportResult", "build_report",
           "metric_curves", "recorded_fingerprint", "tracked_flip_rows"]
