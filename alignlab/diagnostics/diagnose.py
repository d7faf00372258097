"""`alignlab diagnose`: ranking diagnostics of a model (and its reference) on preference data, or of a training run.

Model mode (`--model [--ref] --data`): scores the pairs (scoring.py, cached), prints a summary table (ranking
accuracy R and length-normalised R~, reward accuracy, DPO loss and the mean Theorem 4.1 flip threshold, flip
groups, idealized accuracy R* min/median/max over the beta grid and the alignment gap where the data carries alpha
or votes), writes diagnose.json and the Figure 3 scatter (DPO loss vs reference log-ratio with f(c)).

Run mode (`--run RUN_DIR`): scores the reference and every checkpoint of a training run on a seeded subset of its
data and plots the four flip groups against the step (Figure 2), with the share of initially wrong pairs flipped.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from alignlab.assets import load_tokenizer
from alignlab.assets.models import is_builtin
from alignlab.data import SAMPLES_DIR, load_preference_data
from alignlab.diagnostics.flips import GROUPS, flip_groups
from alignlab.diagnostics.plots import GROUP_LABELS, plot_flip_groups, plot_loss_vs_ref_logratio
from alignlab.diagnostics.ranking import alignment_gap, flip_threshold, ranking_accuracy, ranking_correct
from alignlab.diagnostics.scoring import PairScores, score_model
from alignlab.errors import AlignlabError, ConfigError
from alignlab.losses import dpo_loss
from alignlab.train.config import load_config, run_config_values

USAGE = (
    "alignlab diagnose --model PATH [--ref PATH] --data PATH_OR_NAME [--split S] [--beta 0.1] [--out DIR] "
    "[--batch-size N] [--bf16] [--max-length N] [--max-prompt-length N] [--max-pairs N]\n"
    "       alignlab diagnose --run RUN_DIR [--beta B] [--out DIR] [--batch-size N] [--bf16] [--max-pairs N]"
)
NO_ALPHA_MESSAGE = (
    "no alpha: the data has neither 'alpha' (fraction of raters preferring chosen) nor annotator 'votes', so "
    "idealized ranking accuracy and the alignment gap are undefined (alpha = 1 would make Eq. 2 infinite)"
)
_MODEL_ONLY = (
    "model",
    "ref",
    "data",
    "split",
    "tokenizer",
    "format",
    "columns",
    "max_length",
    "max_prompt_length",
    "prompt_truncation",
    "response_truncation",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignlab diagnose", usage=USAGE, description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model: built-in name (alignlab/tiny-llama), directory or hub id")
    p.add_argument(
        "--ref", help="reference model (enables reward accuracy, flip threshold, idealized accuracy)"
    )
    p.add_argument("--data", help="preference data: file, directory or datasets name")
    p.add_argument("--split", default="train", help="split of --data (default: train)")
    p.add_argument("--tokenizer", help="tokenizer (default: the model's)")
    p.add_argument("--format", default="auto", help="data format (default: auto-detected)")
    p.add_argument(
        "--columns",
        default=None,
        help="column renames, canonical=source pairs separated by commas, e.g. prompt=question",
    )
    p.add_argument(
        "--max-length", type=int, default=512, help="max tokens of prompt + response (default 512)"
    )
    p.add_argument("--max-prompt-length", type=int, default=256, help="max prompt tokens (default 256)")
    p.add_argument("--prompt-truncation", default="keep_end", choices=("keep_end", "keep_start"))
    p.add_argument("--response-truncation", default="truncate", choices=("truncate", "drop_example"))
    p.add_argument("--run", help="training run directory (config.yaml, checkpoint-<step>/, final/)")
    p.add_argument(
        "--beta",
        type=float,
        default=None,
        help="beta of the DPO loss and flip threshold (default 0.1; --run: the run's beta)",
    )
    p.add_argument("--out", default="diagnose", help="output directory for diagnose.json and PNGs")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward (default 16)")
    p.add_argument("--bf16", action="store_true", help="load the models in bfloat16")
    p.add_argument(
        "--max-pairs",
        type=int,
        default=256,
        help="score a seeded random subset of at most N pairs (0: all; default 256)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-pairs subset (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--cache-dir", default=None, help="score cache directory (default: <alignlab cache>/scores)"
    )
    p.add_argument("--no-cache", action="store_true", help="always rescore; read and write no cache")
    return p


def _parse_columns(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    columns = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                f"--columns item '{item}' must look like canonical=source (e.g. prompt=question)"
            )
        columns[key.strip()] = value.strip()
    return columns


def _check_args(args: argparse.Namespace, defaults: argparse.Namespace) -> None:
    if args.run is not None:
        given = [name for name in _MODEL_ONLY if getattr(args, name) != getattr(defaults, name)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(
                f"{flag} cannot be combined with --run: a run's models and data come from its config.yaml"
            )
    else:
        if args.model is None or args.data is None:
            raise ConfigError(
                "diagnose needs --model and --data (or --run RUN_DIR); see alignlab diagnose --help"
            )
    _parse_columns(args.columns)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.max_pairs < 0:
        raise ConfigError(f"--max-pairs must be >= 0 (0: all pairs); got {args.max_pairs}")
    if args.beta is not None and not (math.isfinite(args.beta) and args.beta > 0):
        raise ConfigError(f"--beta must be a number > 0; got {args.beta}")
    if args.device is not None:
        try:
            torch.device(args.device)
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"--device '{args.device}' is not a torch device (e.g. cpu, cuda, cuda:1)"
            ) from None


def _subset(examples: list[dict[str, Any]], max_pairs: int, seed: int) -> list[dict[str, Any]]:
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _print_summary(summary: Mapping[str, Any], header: str, console: Console) -> None:
    console.print(header)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    acc = summary["ranking_accuracy"]
    table.add_row("pairs scored", str(summary["n_pairs"]), "")
    table.add_row("ranking accuracy R", _pct(acc["raw"]), "model alone, strict (ties wrong)")
    table.add_row("length-normalised R~", _pct(acc["length_normalized"]), "per-token mean log-probs")
    no_ref = "needs --ref"
    ref_acc = summary["ref_ranking_accuracy"]
    table.add_row(
        "reference R / R~",
        "n/a" if ref_acc is None else f"{_pct(ref_acc['raw'])} / {_pct(ref_acc['length_normalized'])}",
        no_ref if ref_acc is None else "",
    )
    table.add_row(
        "reward accuracy",
        _pct(summary["reward_accuracy"]),
        no_ref if summary["reward_accuracy"] is None else "what DPO trainers log (Remark 2.5)",
    )
    beta = summary["beta"]
    for key, label in (
        ("mean_dpo_loss", f"mean DPO loss (β={beta:g})"),
        ("mean_flip_threshold", f"mean flip threshold f(c) (β={beta:g})"),
    ):
        value = summary[key]
        table.add_row(label, "n/a" if value is None else f"{value:.4f}", no_ref if value is None else "")
    groups = summary["flip_groups"]
    if groups is not None:
        for group in GROUPS:
            table.add_row(
                f"  {GROUP_LABELS[group]}",
                _pct(groups["fractions"][group]),
                f"{groups['counts'][group]} pairs",
            )
        table.add_row("  flipped (of ref-incorrect)", _pct(groups["flipped_fraction"]), "")
    gap = summary["alignment_gap"]
    if gap is None:
        table.add_row("idealized accuracy R*", "n/a", "see below")
    else:
        excluded = f"{gap['n_tied_excluded']} tied pairs excluded"
        if summary["alpha"].get("n_undefined_excluded"):
            excluded += f", {summary['alpha']['n_undefined_excluded']} without votes"
        for variant, label in (("raw", "R"), ("normalized", "R~")):
            g = gap[variant]
            if g is None:
                continue
            table.add_row(
                f"idealized {label}* min/median/max",
                f"{_pct(g['idealized_min'])} / {_pct(g['idealized_median'])} / {_pct(g['idealized_max'])}",
                f"β ∈ {{{', '.join(f'{b:g}' for b in gap['betas'])}}}",
            )
            table.add_row(
                f"alignment gap ({label}, median)",
                _pct(g["gap_median"]),
                excluded,
            )
    console.print(table)
    if summary["alpha"]["message"]:
        console.print(summary["alpha"]["message"])


# ---------------------------------------------------------------------------------------------------------------
# modes


def _score(
    name: str,
    examples: list[dict[str, Any]],
    args: argparse.Namespace,
    settings: Mapping[str, Any],
    *,
    seed: int = 0,
    dataset: str,
) -> tuple[PairScores, Path | None]:
    return score_model(
        name,
        examples,
        seed=seed,
        bf16=args.bf16,
        batch_size=args.batch_size,
        device=args.device,
        data_settings=settings,
        cache=not args.no_cache,
        cache_root=args.cache_dir,
        dataset=dataset,
    )


def _write_json(out: Path, payload: Mapping[str, Any]) -> Path:
    path = out / "diagnose.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return path


def _model_mode(args: argparse.Namespace, console: Console) -> None:
    beta = 0.1 if args.beta is None else args.beta
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    if args.ref is not None:
        _check_same_tokenizer(args.model, args.ref, tokenizer)
    columns = _parse_columns(args.columns)
    settings = {
        "tokenizer": args.tokenizer or args.model,
        "split": args.split,
        "format": args.format,
        "columns": columns,
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "prompt_truncation": args.prompt_truncation,
        "response_truncation": args.response_truncation,
    }
    examples, report = load_preference_data(
        args.data,
        tokenizer,
        split=args.split,
        columns=columns,
        format=args.format,
        max_length=args.max_length,
        max_prompt_length=args.max_prompt_length,
        prompt_truncation=args.prompt_truncation,
        response_truncation=args.response_truncation,
    )
    subset = _subset(examples, args.max_pairs, args.seed)
    policy, policy_cache = _score(args.model, subset, args, settings, dataset=args.data)
    ref, ref_cache = (
        (None, None) if args.ref is None else _score(args.ref, subset, args, settings, dataset=args.data)
    )
    summary = summarize(policy, ref, beta=beta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if ref is not None:
        losses, _, _ = dpo_loss(
            policy.chosen_logps, policy.rejected_logps, ref.chosen_logps, ref.rejected_logps, beta=beta
        )
        correct = ranking_correct(policy.chosen_logps, policy.rejected_logps)
        plots.append(
            str(
                plot_loss_vs_ref_logratio(
                    out / "loss_vs_ref_logratio.png",
                    ref.rejected_logps - ref.chosen_logps,
                    losses,
                    correct,
                    beta=beta,
                    title=f"DPO loss vs reference log-ratio: {Path(args.model).name} ({len(policy)} pairs, β={beta:g})",
                )
            )
        )
    payload = {
        "mode": "model",
        "model": args.model,
        "ref": args.ref,
        "data": args.data,
        "split": args.split,
        "n_examples": len(examples),
        "subset_seed": args.seed,
        "max_pairs": args.max_pairs,
        "dtype": "bfloat16" if args.bf16 else "float32",
        **summary,
        "plots": plots,
        "score_cache": {"model": policy_cache and str(policy_cache), "ref": ref_cache and str(ref_cache)},
    }
    json_path = _write_json(out, payload)
    header = f"{args.model} on {args.data} ({len(policy)} of {report.n_kept} pairs)"
    _print_summary(summary, header, console)
    if ref is None:
        console.print("no plot: the DPO loss vs reference log-ratio plot needs --ref")
    console.print(f"wrote {json_path}" + "".join(f", {p}" for p in plots))


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


def _run_mode(args: argparse.Namespace, console: Console) -> None:
    run = Path(args.run)
    if not run.is_dir():
        raise AlignlabError(f"run directory '{run}' does not exist")
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise AlignlabError(
            f"run directory '{run}' has no config.yaml (the trainer writes the resolved config there)"
        )
    try:
        saved = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AlignlabError(f"{config_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise AlignlabError(f"{config_path}: not a mapping of config keys")
    config = load_config(base=run_config_values(saved))
    # reference-free methods have no beta of their own: the flip threshold uses DPO's 0.1
    beta = args.beta if args.beta is not None else getattr(config.params, "beta", 0.1)
    checkpoints = _run_checkpoints(run)
    ref_name = config.ref_model or config.model
    ref_seed = config.seed if is_builtin(ref_name) else 0
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    if config.eval_data is not None:
        source, split = config.eval_data, config.eval_split
    elif config.train_data is not None:
        source, split = config.train_data, config.train_split
    else:
        source, split = str(SAMPLES_DIR / "pairs.jsonl"), config.train_split
    settings = {
        "tokenizer": config.tokenizer or config.model,
        "split": split,
        "format": config.data_format,
        "columns": config.columns,
        "max_length": config.max_length,
        "max_prompt_length": config.max_prompt_length,
        "prompt_truncation": config.prompt_truncation,
        "response_truncation": config.response_truncation,
    }
    examples, _ = load_preference_data(
        source,
        tokenizer,
        split=split,
        columns=config.columns or None,
        format=config.data_format,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        prompt_truncation=config.prompt_truncation,
        response_truncation=config.response_truncation,
    )
    subset = _subset(examples, args.max_pairs, args.seed)
    ref, _ = _score(ref_name, subset, args, settings, seed=ref_seed, dataset=source)
    # Step 0 is the reference itself when training started from it (the policy is initialised as the reference).
    rows: list[dict[str, Any]] = []
    points: list[tuple[int, str, PairScores]] = []
    if config.ref_model is None or config.ref_model == config.model:
        points.append((0, "reference", ref))
    for step, label, directory in checkpoints:
        scores, _ = _score(str(directory), subset, args, settings, dataset=source)
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = [row["step"] for row in rows]
    plot = plot_flip_groups(
        out / "flip_groups.png",
        steps,
        {g: [row["fractions"][g] for row in rows] for g in GROUPS},
        [row["flipped_fraction"] for row in rows],
        mean_loss={g: [row["mean_loss"][g] for row in rows] for g in GROUPS},
        title=f"Flip groups over training: {run.name} ({config.method}, {len(subset)} pairs, β={beta:g})",
    )
    payload = {
        "mode": "run",
        "run": str(run),
        "method": config.method,
        "reference": ref_name,
        "data": source,
        "split": split,
        "n_pairs": len(subset),
        "subset_seed": args.seed,
        "beta": beta,
        "strict": True,
        "dtype": "bfloat16" if args.bf16 else "float32",
        "checkpoints": rows,
        "plots": [str(plot)],
    }
    json_path = _write_json(out, payload)
    console.print(f"{run} ({config.method}): {len(subset)} pairs of {source}, β={beta:g}")
    table = Table()
    for column in ("step", "checkpoint", "R", *("cc", "ci", "ic", "ii"), "flipped"):
        table.add_column(column, justify="left" if column == "checkpoint" else "right")
    for row in rows:
        table.add_row(
            str(row["step"]),
            row["label"],
            _pct(row["ranking_accuracy"]),
            *(_pct(row["fractions"][g]) for g in GROUPS),
            _pct(row["flipped_fraction"]),
        )
    console.print(table)
    console.print(
        "cc/ci/ic/ii: reference correct/incorrect -> model correct/incorrect (strict); "
        "flipped = ic / (ic + ii)"
    )
    last = rows[-1]["flipped_fraction"]
    console.print(f"flipped at the last checkpoint: {_pct(last)} of the pairs the reference ranked wrongly")
    console.print(f"wrote {json_path}, {plot}")


def diagnose_main(argv: Sequence[str]) -> int:
    """Entry point of `alignlab diagnose`; returns the exit code (0, or 2 for an argparse usage error).

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2), or re-raises with --debug.
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed usage and the error (or --help)
        return int(exc.code or 0)
    console = Console(width=max(Console().width, 110), soft_wrap=False)
    _check_args(args, parser.parse_args([]))
    if args.run is not None:
        _run_mode(args, console)
    else:
        _model_mode(args, console)
    return 0


__all__ = ["NO_ALPHA_MESSAGE", "USAGE", "diagnose_main", "summarize"]
