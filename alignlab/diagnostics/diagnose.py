"""Ranking diagnostics of a model (and its reference) on preference data, or of a training run; the library
behind `alignlab diagnose` (whose parser and tables are alignlab.cli.diagnose).

Model mode (`diagnose_model`): scores the pairs (scoring.py, cached) and summarizes them (ranking accuracy R and
length-normalised R~, reward accuracy, DPO loss and the mean Theorem 4.1 flip threshold, flip groups, idealized
accuracy R* min/median/max over the beta grid and the alignment gap where the data carries alpha or votes), writes
diagnose.json and the Figure 3 scatter (DPO loss vs reference log-ratio with f(c)).

Run mode (`diagnose_run`): scores the reference and every checkpoint of a training run on a seeded subset of its
data and plots the four flip groups against the step (Figure 2), with the share of initially wrong pairs flipped.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignlab.assets import load_tokenizer
from alignlab.assets.models import is_builtin
from alignlab.cache import write_text_atomically
from alignlab.data import SAMPLES_DIR, DataSpec, load_preference_data
from alignlab.diagnostics.flips import GROUPS, flip_groups
from alignlab.diagnostics.plots import flip_groups_figure, plot_loss_vs_ref_logratio, save_figure
from alignlab.diagnostics.ranking import alignment_gap, flip_threshold, ranking_accuracy, ranking_correct
from alignlab.diagnostics.scoring import PairScores, score_model
from alignlab.errors import AlignlabError, ConfigError
from alignlab.losses import dpo_loss
from alignlab.train.config import TrainConfig
from alignlab.train.run_info import load_run_config, resolve_run_path

NO_ALPHA_MESSAGE = (
    "no alpha: the data has neither 'alpha' (fraction of raters preferring chosen) nor annotator 'votes', so "
    "idealized ranking accuracy and the alignment gap are undefined (alpha = 1 would make Eq. 2 infinite)"
)


def seeded_subset(examples: list[dict[str, Any]], max_pairs: int, seed: int) -> list[dict[str, Any]]:
    """A seeded random subset of at most max_pairs examples (0: all), kept in data order."""
    if max_pairs == 0 or len(examples) <= max_pairs:
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), max_pairs))
    return [examples[i] for i in keep]


def _check_same_tokenizer(model: str, ref: str, tokenizer: Any) -> None:
    try:
        ref_tokenizer = load_tokenizer(ref)
    except AlignlabError:
        return  # a reference directory without tokenizer files: nothing to compare against
    if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"--ref '{ref}' has a different tokenizer than --model '{model}'; both must score the same token ids"
        )


# ---------------------------------------------------------------------------------------------------------------
# summary of one model (+ reference)


def summarize(policy: PairScores, ref: PairScores | None, *, beta: float) -> dict[str, Any]:
    """The diagnostics of `policy` (and `ref`, scored on the same pairs): a JSON-ready dict.

    Accuracies are fractions, strict (ties count as wrong). Keys: n_pairs, strict, beta, ranking_accuracy
    {raw, length_normalized}; with ref also ref_ranking_accuracy, reward_accuracy, mean_dpo_loss,
    mean_flip_threshold, flip_groups; alpha {source, message}; alignment_gap (AlignmentGap.to_dict()) or None.
    """
    lengths = {"chosen_lengths": policy.chosen_lengths, "rejected_lengths": policy.rejected_lengths}
    out: dict[str, Any] = {
        "n_pairs": len(policy),
        "strict": True,
        "beta": beta,
        "ranking_accuracy": {
            "raw": ranking_accuracy(policy.chosen_logps, policy.rejected_logps),
            "length_normalized": ranking_accuracy(policy.chosen_logps, policy.rejected_logps, **lengths),
        },
        "ref_ranking_accuracy": None,
        "reward_accuracy": None,
        "mean_dpo_loss": None,
        "mean_flip_threshold": None,
        "flip_groups": None,
        "alignment_gap": None,
    }
    if ref is not None:
        if not torch.equal(ref.index, policy.index):
            raise AlignlabError(
                "policy and reference scores cover different pairs; score both on the same data"
            )
        out["ref_ranking_accuracy"] = {
            "raw": ranking_accuracy(ref.chosen_logps, ref.rejected_logps),
            "length_normalized": ranking_accuracy(ref.chosen_logps, ref.rejected_logps, **lengths),
        }
        # Remark 2.5: reward accuracy compares beta * (log pi - log pi_ref) of chosen and rejected; beta > 0 cancels.
        out["reward_accuracy"] = ranking_accuracy(
            policy.chosen_logps - ref.chosen_logps, policy.rejected_logps - ref.rejected_logps
        )
        losses, _, _ = dpo_loss(
            policy.chosen_logps, policy.rejected_logps, ref.chosen_logps, ref.rejected_logps, beta=beta
        )
        out["mean_dpo_loss"] = losses.mean().item()
        out["mean_flip_threshold"] = (
            flip_threshold(ref.chosen_logps, ref.rejected_logps, beta=beta).mean().item()
        )
        out["flip_groups"] = flip_groups(
            ref.chosen_logps, ref.rejected_logps, policy.chosen_logps, policy.rejected_logps, beta=beta
        ).to_dict()
    if policy.alpha is None:
        out["alpha"] = {"source": None, "message": NO_ALPHA_MESSAGE}
    elif ref is None:
        out["alpha"] = {
            "source": "data",
            "message": "idealized accuracy is computed from the reference: pass --ref",
        }
    else:
        out["alpha"] = _idealized(out, policy, ref)
    return out


def _idealized(out: dict[str, Any], policy: PairScores, ref: PairScores) -> dict[str, Any]:
    """Sets out["alignment_gap"] over the pairs with a defined alpha; returns the summary's "alpha" entry.

    alpha is NaN (undefined) for a ranking pair whose two responses got no vote (votes.alphas_from_records): such
    pairs are excluded from both sides of the gap and counted, as tied pairs are.
    """
    assert policy.alpha is not None
    defined = ~torch.isnan(policy.alpha)
    n_undefined = int((~defined).sum())
    entry: dict[str, Any] = {"source": "data", "message": None, "n_undefined_excluded": n_undefined}
    if n_undefined:
        entry["message"] = (
            f"{n_undefined} of {len(policy)} pairs excluded from idealized accuracy: neither of their two responses "
            f"got a vote, so alpha (chosen's share of the two responses' votes) is undefined"
        )
    if not defined.any():
        return entry

    def kept(values: torch.Tensor) -> torch.Tensor:
        return values[defined]

    try:
        gap = alignment_gap(
            kept(policy.chosen_logps),
            kept(policy.rejected_logps),
            kept(ref.chosen_logps),
            kept(ref.rejected_logps),
            kept(policy.alpha),
            chosen_lengths=kept(policy.chosen_lengths),
            rejected_lengths=kept(policy.rejected_lengths),
        )
    except AlignlabError as exc:  # e.g. every pair tied (alpha == 0.5): nothing to score
        entry["message"] = "; ".join(filter(None, [entry["message"], str(exc)]))
    else:
        out["alignment_gap"] = gap.to_dict()
    return entry


# ---------------------------------------------------------------------------------------------------------------
# modes


@dataclass(frozen=True)
class ScoringOptions:
    """How diagnose scores a model: dtype, batch size, device and the score cache (see scoring.score_model)."""

    bf16: bool = False
    batch_size: int = 16
    device: str | None = None
    cache: bool = True
    cache_dir: str | Path | None = None


@dataclass
class DiagnoseResult:
    """What one diagnose run produced: ``report`` is the content of diagnose.json, written at ``json_path``
    (its "plots" lists the PNGs); ``n_kept`` is the number of pairs the data kept after loading (model mode)."""

    report: dict[str, Any]
    json_path: Path
    n_kept: int | None = None


def _score(
    name: str,
    examples: list[dict[str, Any]],
    options: ScoringOptions,
    settings: Mapping[str, Any],
    *,
    seed: int = 0,
    dataset: str,
) -> tuple[PairScores, Path | None]:
    return score_model(
        name,
        examples,
        seed=seed,
        bf16=options.bf16,
        batch_size=options.batch_size,
        device=options.device,
        data_settings=settings,
        cache=options.cache,
        cache_root=options.cache_dir,
        dataset=dataset,
    )


def _output_dir(out: str | Path | None, default: Path) -> Path:
    """Where diagnose writes: ``out`` when given (a directory the caller named: its diagnose.json and plots are
    replaced), else ``default``, refused when it holds an earlier diagnose.json so that a default never
    overwrites silently. Checked before any scoring."""
    if out is not None:
        return Path(out)
    if (default / "diagnose.json").exists():
        raise ConfigError(f"{default / 'diagnose.json'} exists (an earlier diagnose): pass --out DIR to write "
                          "elsewhere, or --out with this directory to replace it")
    return default


def _write_json(out: Path, payload: Mapping[str, Any]) -> Path:
    path = out / "diagnose.json"
    write_text_atomically(path, json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")
    return path


def _cache_settings(tokenizer: str, spec: DataSpec) -> dict[str, Any]:
    """What the score cache keys on besides the model and the examples: the tokenizer and the data settings."""
    return {"tokenizer": tokenizer, **{k: v for k, v in dataclasses.asdict(spec).items() if k != "data_files"}}


def diagnose_model(
    model: str,
    data: str,
    *,
    ref: str | None = None,
    tokenizer: str | None = None,
    spec: DataSpec | None = None,
    beta: float = 0.1,
    out: str | Path | None = None,
    max_pairs: int = 256,
    seed: int = 0,
    options: ScoringOptions | None = None,
) -> DiagnoseResult:
    """Model mode: score a seeded subset of at most ``max_pairs`` pairs of ``data`` (0: all) under ``model``
    (and ``ref``), write ``out``/diagnose.json and, with ``ref``, the Figure 3 scatter (DPO loss vs reference
    log-ratio). ``spec`` says how ``data`` is read and tokenized (default: training's defaults). ``out`` defaults
    to ./diagnose, which must not hold an earlier diagnose.json (a named ``out`` is replaced). The report holds
    ``summarize``'s keys plus the inputs, the plots and the score cache paths.
    """
    out = _output_dir(out, Path("diagnose"))
    options = options or ScoringOptions()
    spec = spec or DataSpec()
    tokenizer_name = tokenizer or model
    tok = load_tokenizer(tokenizer_name)
    if ref is not None:
        _check_same_tokenizer(model, ref, tok)
    settings = _cache_settings(tokenizer_name, spec)
    examples, data_report = load_preference_data(data, tok, spec)
    subset = seeded_subset(examples, max_pairs, seed)
    policy, policy_cache = _score(model, subset, options, settings, dataset=data)
    ref_scores, ref_cache = (
        (None, None) if ref is None else _score(ref, subset, options, settings, dataset=data)
    )
    summary = summarize(policy, ref_scores, beta=beta)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if ref_scores is not None:
        losses, _, _ = dpo_loss(
            policy.chosen_logps,
            policy.rejected_logps,
            ref_scores.chosen_logps,
            ref_scores.rejected_logps,
            beta=beta,
        )
        correct = ranking_correct(policy.chosen_logps, policy.rejected_logps)
        plots.append(
            str(
                plot_loss_vs_ref_logratio(
                    out / "loss_vs_ref_logratio.png",
                    ref_scores.rejected_logps - ref_scores.chosen_logps,
                    losses,
                    correct,
                    beta=beta,
                    title=f"DPO loss vs reference log-ratio: {Path(model).name} ({len(policy)} pairs, β={beta:g})",
                )
            )
        )
    payload = {
        "mode": "model",
        "model": model,
        "ref": ref,
        "data": data,
        "split": spec.split,
        "n_examples": len(examples),
        "subset_seed": seed,
        "max_pairs": max_pairs,
        "dtype": "bfloat16" if options.bf16 else "float32",
        **summary,
        "plots": plots,
        "score_cache": {"model": policy_cache and str(policy_cache), "ref": ref_cache and str(ref_cache)},
    }
    return DiagnoseResult(payload, _write_json(out, payload), n_kept=data_report.n_kept)


_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def _last_logged_step(run: Path) -> int | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AlignlabError(f"{path} line {number}: not valid JSON") from None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            last = step if last is None else max(last, step)
    return last


def _run_checkpoints(run: Path) -> list[tuple[int, str, Path]]:
    """(step, label, directory) of checkpoint-<step>/ and final/, by step; final/ takes the last logged step."""
    found = []
    for entry in run.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry.name, entry))
    found.sort()
    final = run / "final"
    if final.is_dir():
        step = _last_logged_step(run)
        if step is None:
            # No metrics.jsonl step: place final/ one step after the last checkpoint (marked in diagnose.json).
            step = (found[-1][0] + 1) if found else 1
            found.append((step, "final (step unknown)", final))
        elif not found or step > found[-1][0]:
            found.append((step, "final", final))
        # else: final/ is the same step as the last checkpoint (saved at the end of training): scored once
    if not found:
        raise AlignlabError(f"run directory '{run}' has no checkpoint-<step>/ or final/ directory")
    return found


def spread(items: list[Any], most: int | None) -> list[Any]:
    """At most ``most`` of ``items`` (None: all), evenly spaced, the last one always kept, in order."""
    if most is None or len(items) <= most:
        return list(items)
    if most < 1:
        return []
    step = len(items) / most
    return [items[len(items) - 1 - int(k * step)] for k in range(most)][::-1]


def run_data(config: TrainConfig, data: str | None = None) -> tuple[str, DataSpec]:
    """The pairs a run's diagnostics score and how they are read: ``data`` when given (its own format detected,
    all its records, truncated as the run truncated), else the run's eval data, else its training data (the
    bundled sample pairs by default), each read as the run read it."""
    d = config.data
    if data is not None:
        return data, dataclasses.replace(d.spec(d.train_split), format="auto", columns=None, limit=None)
    if d.eval_data is not None:
        return d.eval_data, d.spec(d.eval_split)
    return d.train_data or str(SAMPLES_DIR / "pairs.jsonl"), d.spec(d.train_split)


@dataclass
class CheckpointFlips:
    """The four flip groups of every checkpoint of a run against its reference, on one seeded subset of pairs.

    rows: one per point, by step: step, label ("reference" at step 0 when training started from it,
    checkpoint-<step>, final), ranking_accuracy and flip_groups(...).to_dict()'s keys; the rest says what was
    scored.
    """

    rows: list[dict[str, Any]]
    reference: str
    data: str
    split: str
    n_pairs: int
    beta: float


def checkpoint_flips(
    run: str | Path,
    config: TrainConfig,
    *,
    beta: float,
    max_pairs: int = 256,
    seed: int = 0,
    options: ScoringOptions | None = None,
    data: str | None = None,
    max_checkpoints: int | None = None,
) -> CheckpointFlips:
    """Score the reference and every checkpoint of the run in ``run`` (trained with ``config``) on a seeded subset
    of at most ``max_pairs`` pairs of ``data`` (default: the run's eval data, else its training data), read as the
    run reads its training data, and count the flip groups at each (scores are cached: scoring.score_model).
    ``max_checkpoints`` (default: all) scores that many of them, evenly spaced over training, the last included."""
    options = options or ScoringOptions()
    run = Path(run)
    checkpoints = spread(_run_checkpoints(run), max_checkpoints)
    ref_name = resolve_run_path(run, config, config.model.ref_model or config.model.name)
    ref_seed = config.run.seed if is_builtin(ref_name) else 0
    tokenizer_name = resolve_run_path(run, config, config.model.tokenizer or config.model.name)
    tokenizer = load_tokenizer(tokenizer_name)
    source, spec = run_data(config, data)
    settings = _cache_settings(config.model.tokenizer or config.model.name, spec)
    examples, _ = load_preference_data(source, tokenizer, spec)
    subset = seeded_subset(examples, max_pairs, seed)
    ref, _ = _score(ref_name, subset, options, settings, seed=ref_seed, dataset=source)
    # Step 0 is the reference itself when training started from it (the policy is initialised as the reference).
    rows: list[dict[str, Any]] = []
    points: list[tuple[int, str, PairScores]] = []
    if config.model.ref_model is None or config.model.ref_model == config.model.name:
        points.append((0, "reference", ref))
    for step, label, directory in checkpoints:
        scores, _ = _score(str(directory), subset, options, settings, dataset=source)
        points.append((step, label, scores))
    for step, label, scores in points:
        groups = flip_groups(
            ref.chosen_logps, ref.rejected_logps, scores.chosen_logps, scores.rejected_logps, beta=beta
        )
        rows.append(
            {
                "step": step,
                "label": label,
                "ranking_accuracy": ranking_accuracy(scores.chosen_logps, scores.rejected_logps),
                **groups.to_dict(),
            }
        )
    return CheckpointFlips(rows, ref_name, source, spec.split, len(subset), beta)


def flip_rows_figure(rows: list[dict[str, Any]], title: str) -> Any:
    """flip_groups_figure of CheckpointFlips.rows (with each group's mean DPO loss where the rows have it)."""
    losses = {g: [(row.get("mean_loss") or {}).get(g) for row in rows] for g in GROUPS}
    return flip_groups_figure(
        [row["step"] for row in rows],
        {g: [row["fractions"][g] for row in rows] for g in GROUPS},
        [row["flipped_fraction"] for row in rows],
        mean_loss=losses if any(v is not None for values in losses.values() for v in values) else None,
        title=title,
    )


def diagnose_run(
    run: str | Path,
    *,
    beta: float | None = None,
    out: str | Path | None = None,
    max_pairs: int = 256,
    seed: int = 0,
    options: ScoringOptions | None = None,
) -> DiagnoseResult:
    """Run mode: score the reference and every checkpoint of the training run in ``run`` on a seeded subset of
    its data, write ``out``/diagnose.json (one row per checkpoint under "checkpoints") and the Figure 2 plot of
    the four flip groups against the step. ``out`` defaults to ``run``/diagnose, which must not hold an earlier
    diagnose.json (a named ``out`` is replaced). ``beta`` defaults to the run's (DPO's 0.1 for reference-free
    methods).
    """
    options = options or ScoringOptions()
    run = Path(run)
    if not run.is_dir():
        raise AlignlabError(f"run directory '{run}' does not exist")
    out = _output_dir(out, run / "diagnose")
    config = load_run_config(run)
    # reference-free methods have no beta of their own: the flip threshold uses DPO's 0.1
    beta = beta if beta is not None else getattr(config.method.params, "beta", 0.1)
    flips = checkpoint_flips(run, config, beta=beta, max_pairs=max_pairs, seed=seed, options=options)
    rows = flips.rows
    out.mkdir(parents=True, exist_ok=True)
    figure = flip_rows_figure(
        rows, f"Flip groups over training: {run.name} ({config.method.name}, {flips.n_pairs} pairs, β={beta:g})")
    plot = save_figure(figure, out / "flip_groups.png")
    payload = {
        "mode": "run",
        "run": str(run),
        "method": config.method.name,
        "reference": flips.reference,
        "data": flips.data,
        "split": flips.split,
        "n_pairs": flips.n_pairs,
        "subset_seed": seed,
        "beta": beta,
        "strict": True,
        "dtype": "bfloat16" if options.bf16 else "float32",
        "checkpoints": rows,
        "plots": [str(plot)],
    }
    return DiagnoseResult(payload, _write_json(out, payload))


__all__ = ["NO_ALPHA_MESSAGE", "CheckpointFlips", "DiagnoseResult", "ScoringOptions", "checkpoint_flips", "diagnose_model",
           "diagnose_run", "flip_rows_figure", "run_data", "seeded_subset", "spread", "summarize"]
