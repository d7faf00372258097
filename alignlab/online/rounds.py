"""Online preference training: rounds of sample -> judge -> pair -> train, each round an ordinary training run.

Round r:
  1. sample K = samples_per_prompt completions of each of the round's prompts from the current policy (the
     initial model for round 0, round r-1's final/ after that), seeded per sequence from (seed, round);
  2. score every completion with the reward judge; pair them (best_vs_worst or all_pairs above min_margin,
     alignlab.online.pairs) and save samples.jsonl and pairs.jsonl, atomically, before any training. The pairs
     are pre-tokenized (format `tokenized`): they train on exactly the sampled ids, and a completion cut off at
     max_new_tokens (not finished) gets no EOS;
  3. train the config's paired method on pairs.jsonl with the Trainer for steps_per_round steps (or `epochs`
     passes), starting from the current policy, in rounds/round-r/train/. The reference is the initial one
     (`reference: fixed`: ref_model, else the initial model) or the current policy (`previous_round`: iterative
     DPO, the reference copied from the policy the round starts from). The optimizer state and the learning-rate
     schedule start afresh every round, as in iterative DPO: each round is its own run;
  4. measure (below) and write round.json last: a round with round.json is finished.

Resume. `--resume` skips finished rounds, reuses a round's saved samples and pairs (never samples again) and
resumes the round's training run with the trainer's own --resume (bitwise exact from its last checkpoint, so
save_steps sets how much of a round a crash can cost). Every round reads its policy from disk, so a resumed run
equals an uninterrupted one.

Metrics of a round (round.json, one line of online_metrics.jsonl):
  samples/*  the judge's rewards of the round's samples (mean, std, mean of each prompt's best and worst) and
             truncated_fraction, the fraction cut off at max_new_tokens (they train as sampled, without EOS);
  pairs/*    how many pairs and prompts with a pair, the reward margins (chosen minus rejected), and the ranking
             accuracy (Def. 2.3 of arXiv 2405.19534, strict; and length-normalised) of the trained policy on them;
  heldout/*  on a held-out set fixed at the start: the judge's mean reward of the trained policy's samples (the
             same seeds every round), its ranking accuracy on the held-out pairs and the flip groups against the
             initial policy ("flips since the start", alignlab.diagnostics.flips).
The held-out prompts are eval_data's or, without eval_data, an eval_fraction of the prompts, never trained on.
The held-out pairs are eval_data's when it holds preference pairs; otherwise (prompt-only records, or another
format) they are built once from the initial policy's samples of the held-out prompts.

Checks. Everything that can be checked before a run writes anything is: the keys, the run directory, the prompts
(and eval_data's pairs), prompts_per_round against the number of prompts, and whether a round can give one
optimizer step's pairs at all. A round whose judge gives fewer pairs than one step stops the run for good (its
samples are saved and the keys that would change that cannot change on resume): start again in a new run_dir.
run_dir is made absolute in every round's config, so a resume may spell it differently (relative or absolute).

Layout of run_dir: config.yaml, online_metrics.jsonl, heldout/ (samples.jsonl, pairs.jsonl, baseline.json) and
rounds/round-000/ (samples.jsonl, pairs.jsonl, train/ — a trainer run directory —, heldout_samples.jsonl,
round.json), round-001/, ...
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from alignlab.assets import load_tokenizer, resolve_device
from alignlab.cache import write_json_atomically, write_jsonl_atomically, write_text_atomically
from alignlab.data import PREFERENCE_FORMATS, SAMPLES_DIR, load_preference_data, padding_id
from alignlab.data.prompts import PromptItem, read_prompt_source, read_prompts
from alignlab.diagnostics.flips import flip_groups
from alignlab.diagnostics.ranking import ranking_correct
from alignlab.errors import AlignlabError, ConfigError, DataError
from alignlab.judges import load_judge
from alignlab.models import Trunk, score_batches
from alignlab.online.pairs import build_pairs
from alignlab.online.sampling import check_reward_judge, derived_seed, sample_and_judge
from alignlab.train.config import OnlineConfig, TrainConfig, load_config, run_config_values
from alignlab.train.modeling import autocast, load_named_model
from alignlab.train.run_lock import RunLock
from alignlab.train.trainer import Trainer

# keys that may change when a run resumes: `rounds` (to go on), logging, checkpoint cadence
RESUMABLE_KEYS = frozenset({"rounds", "progress", "tensorboard", "logging_steps", "save_steps", "save_total_limit",
                            "max_nonfinite_steps", "run_dir"})
_TRAIN_STAGE, _HELDOUT_STAGE, _PROMPT_STAGE = 1, 2, 3  # mixed into the seeds of sampling and prompt draws


@dataclass
class OnlineResult:
    """run_dir; initial: the held-out baseline of the initial policy (empty without a held-out set); rounds: the
    metrics of every finished round, in order (online_metrics.jsonl)."""

    run_dir: Path
    initial: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def round_dir(run_dir: str | Path, r: int) -> Path:
    """The directory of round r (0-based) of an online run."""
    return Path(run_dir) / "rounds" / f"round-{r:03d}"


def _run_dir(cfg: TrainConfig) -> Path:
    """The online run's directory, absolute: a resume that spells it another way writes the same round configs."""
    return cfg.resolved_run_dir().resolve()


def round_config(cfg: TrainConfig, r: int) -> TrainConfig:
    """The training config of round r: the online config with its online section off, trained on the round's
    pairs from the current policy, against the reference the `reference` key asks for, without the trainer's
    own held-out split (the online run measures a fixed held-out set itself). Its paths under run_dir are
    absolute."""
    values = {**cfg.to_dict(), **dataclasses.asdict(OnlineConfig())}  # the online keys off (their flat names)
    here = round_dir(_run_dir(cfg), r)
    values.update(model=cfg.model.name if r == 0 else str(round_dir(_run_dir(cfg), r - 1) / "train" / "final"),
                  tokenizer=cfg.model.tokenizer or cfg.model.name, train_data=str(here / "pairs.jsonl"),
                  train_split="train", data_format="auto", columns={}, limit=None, eval_data=None,
                  eval_fraction=0.0, drop_identical_pairs=True, max_steps=cfg.online.steps_per_round,
                  run_dir=str(here / "train"))
    if cfg.method.record.needs_ref:
        # fixed: the configured reference, else the initial model (a built-in loads with the same seed, so it is
        # the same weights); previous_round: none named, so the trainer copies the policy the round starts from
        fixed = cfg.model.ref_model or (cfg.model.name if r > 0 else None)
        values["ref_model"] = fixed if cfg.online.reference == "fixed" else None
    return load_config(base=values)


def run_online(cfg: TrainConfig, *, judge: Any = None, resume: bool = False, console: Any = None) -> OnlineResult:
    """Run (or, with resume, continue) the online rounds of a validated config whose `rounds` is set.

    judge: a reward judge object (score_batch(prompts, completions) -> [n] rewards); default: alignlab.judges'
    load_judge(cfg.online.judge). console: where progress lines and the trainer's progress bars go (rich Console).
    Holds the run directory's lock throughout. Returns the held-out baseline and every round's metrics.
    """
    if cfg.online.rounds is None:
        raise ConfigError("run_online needs online rounds: set rounds (>= 1)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("online rounds run in one process (sampling and judging are not distributed): launch "
                          "without accelerate launch / torchrun")
    judge = check_reward_judge(load_judge(cfg.online.judge) if judge is None else judge)
    run_dir = cfg.resolved_run_dir()
    lock = RunLock(run_dir).acquire()
    try:
        return _Online(cfg, judge, resume, console).run()
    finally:
        lock.release()


class _Online:
    """One online run: its prompts, held-out set and rounds (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, judge: Any, resume: bool, console: Any):
        self.cfg, self.judge, self.resume, self.console = cfg, judge, resume, console
        self.run_dir = _run_dir(cfg)
        self.device = resolve_device(None)
        self.tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.name)
        # how the pair files this run writes are read: as each round's training reads them (round_config)
        self.pairs_spec = round_config(cfg, 0).data.spec("train")
        self.heldout_spec = self.pairs_spec  # eval_data's own settings when its pairs are the held-out ones
        self._pairs: dict[str, list[dict[str, Any]]] = {}  # held-out pairs, tokenized once (_heldout_pairs)

    def _print(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    # ---------------------------------------------------------------------------------------------- set-up
    def _check_run_dir(self) -> int:
        """Refuse a used run_dir without resume, or a resume with changed keys; the first unfinished round.
        Reads only."""
        cfg, rounds = self.cfg, self.cfg.online.rounds
        saved_path = self.run_dir / "config.yaml"
        started = any((self.run_dir / name).exists() for name in ("config.yaml", "heldout", "rounds"))
        if started and not self.resume:
            raise ConfigError(f"run_dir '{self.run_dir}' already holds a run: pass --resume to continue it, or "
                              "choose another run_dir")
        finished = 0
        while (round_dir(self.run_dir, finished) / "round.json").is_file():
            finished += 1
        if saved_path.exists():
            saved_values = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            saved = load_config(base=run_config_values(saved_values)).to_dict()
            if saved["rounds"] is None:
                raise ConfigError(f"run_dir '{self.run_dir}' holds an offline training run, not online rounds; "
                                  "choose another run_dir")
            for key, value in cfg.to_dict().items():
                if key not in RESUMABLE_KEYS and saved.get(key) != value:
                    raise ConfigError(f"--resume: config key '{key}' is {value!r} but the run was started with "
                                      f"{saved.get(key)!r}; resume with the same value")
        if started and finished >= rounds:
            raise ConfigError(f"--resume: run_dir '{self.run_dir}' has finished its {finished} rounds: raise "
                              "rounds to go on")
        return finished

    def _prompts(self) -> tuple[list[PromptItem], list[PromptItem], Path | None]:
        """(training prompts, held-out prompts, held-out pairs file given by eval_data or None). Reads only; a
        preference eval_data is tokenized here, so a bad one stops the run before it writes anything."""
        data = self.cfg.data
        source = str(data.train_data or SAMPLES_DIR / "pairs.jsonl")
        prompts = read_prompts(source, data.spec(data.train_split))
        if data.eval_data is not None:
            spec = data.spec(data.eval_split)
            heldout, fmt = read_prompt_source(data.eval_data, spec)
            if fmt not in PREFERENCE_FORMATS:  # prompts only: pairs from the initial policy's samples (_heldout)
                return prompts, heldout, None
            self.heldout_spec = spec
            self._heldout_pairs(str(data.eval_data))
            return prompts, heldout, Path(data.eval_data)
        if data.eval_fraction == 0:
            return prompts, [], None
        held = max(1, round(len(prompts) * data.eval_fraction))
        if held >= len(prompts):
            raise DataError(f"{source}: {len(prompts)} distinct prompts leave none to train on after holding out "
                            f"eval_fraction {data.eval_fraction}; give more prompts or lower eval_fraction")
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(self.cfg.run.seed)).tolist()
        held_out = set(order[:held])
        return ([p for i, p in enumerate(prompts) if i not in held_out],
                [p for i, p in enumerate(prompts) if i in held_out], None)

    def _round_prompts(self, n_prompts: int, r: int) -> list[int]:
        """Positions of round r's prompts: all of them, or prompts_per_round distinct ones drawn by a seeded
        permutation of its own (a pure function of (seed, round))."""
        per_round = self.cfg.online.prompts_per_round
        if per_round is None:
            return list(range(n_prompts))
        generator = torch.Generator().manual_seed(derived_seed(self.cfg.run.seed, _PROMPT_STAGE, r))
        return sorted(torch.randperm(n_prompts, generator=generator)[:per_round].tolist())

    def _check_sizes(self, n_prompts: int) -> None:
        """Refuse, before anything is written, prompts_per_round above the number of training prompts and rounds
        that cannot give one optimizer step's pairs whatever the judge says."""
        online, optim = self.cfg.online, self.cfg.optim
        per_round = online.prompts_per_round
        if per_round is not None and per_round > n_prompts:
            raise ConfigError(f"config key 'prompts_per_round' is {per_round}, more than the {n_prompts} training "
                              "prompts (distinct, held-out ones excluded): lower it or leave it null for all")
        k = online.samples_per_prompt
        per_prompt = 1 if online.pair_rule == "best_vs_worst" else k * (k - 1) // 2
        most = (per_round or n_prompts) * per_prompt
        step_rows = optim.micro_batch_size * optim.gradient_accumulation_steps
        if most < step_rows:
            raise ConfigError(f"a round gives at most {most} pairs ({per_round or n_prompts} prompts, pair_rule "
                              f"{online.pair_rule}, samples_per_prompt {k}), fewer than one optimizer step's "
                              f"{step_rows} (micro_batch_size x gradient_accumulation_steps): raise "
                              "prompts_per_round or samples_per_prompt, or lower micro_batch_size")

    # ------------------------------------------------------------------------------------------- models
    def _load(self, name: str) -> torch.nn.Module:
        """A policy for sampling and scoring, as the trainer loads it (a built-in with the run's seed, a trained
        round's final/ as saved)."""
        dtype = torch.bfloat16 if self.cfg.model.dtype == "bfloat16" else torch.float32
        return load_named_model(name, seed=self.cfg.run.seed, dtype=dtype).to(self.device).eval()

    def _sample(self, model: torch.nn.Module, prompts: Sequence[PromptItem], prompt_indices: Sequence[int],
                seed: int) -> list[dict[str, Any]]:
        online = self.cfg.online
        with autocast(self.cfg.model.mixed_precision, self.device):
            return sample_and_judge(model, self.tokenizer, prompts, prompt_indices, self.judge,
                                    n=online.samples_per_prompt, seed=seed, temperature=online.temperature,
                                    top_p=online.top_p, top_k=online.top_k, max_new_tokens=online.max_new_tokens,
                                    batch_size=online.generation_batch_size)

    def _pair_logps(self, model: torch.nn.Module, examples: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
        """Summed log-probs and response lengths of the chosen and rejected responses, [N] each."""
        cfg = self.cfg
        with autocast(cfg.model.mixed_precision, self.device):
            out = score_batches(Trunk(model), examples, pad_id=padding_id(self.tokenizer),
                                batch_size=cfg.run.eval_batch_size, chunked=cfg.model.chunked_ops,
                                chunk_size=cfg.model.chunk_size, chunk_bytes=cfg.model.chunk_mib * 2**20)
        return {"chosen_logps": out["logps"][0].tolist(), "rejected_logps": out["logps"][1].tolist(),
                "chosen_tokens": out["tokens"][0].tolist(), "rejected_tokens": out["tokens"][1].tolist()}

    def _heldout_pairs(self, source: str) -> list[dict[str, Any]]:
        if source not in self._pairs:
            self._pairs[source] = load_preference_data(source, self.tokenizer, self.heldout_spec)[0]
        return self._pairs[source]

    # ------------------------------------------------------------------------------------------ held-out
    def _heldout(self, prompts: list[PromptItem], given: Path | None) -> dict[str, Any]:
        """The held-out baseline (heldout/baseline.json): the initial policy's samples, rewards and pair
        log-probs; built once, then read."""
        directory = self.run_dir / "heldout"
        path = directory / "baseline.json"
        if not prompts:
            return {}
        if path.is_file():
            return _read_json(path)
        model = self._load(self.cfg.model.name)
        seed = derived_seed(self.cfg.run.seed, _HELDOUT_STAGE)
        samples = self._sample(model, prompts, list(range(len(prompts))), seed)
        write_jsonl_atomically(directory / "samples.jsonl", samples)
        if given is None:
            pairs = build_pairs(samples, rule=self.cfg.online.pair_rule, min_margin=self.cfg.online.min_margin)
            write_jsonl_atomically(directory / "pairs.jsonl", pairs)
            pairs_source: Any = str(directory / "pairs.jsonl") if pairs else None
        else:
            pairs_source = str(given)
        baseline: dict[str, Any] = {"seed": seed, "prompts": len(prompts), "pairs_file": pairs_source,
                                    "reward_mean": statistics.fmean(s["reward"] for s in samples)}
        if pairs_source is None:
            self._print("held-out prompts gave no pairs (every prompt's samples tied): no held-out ranking metrics")
        else:
            baseline.update(self._pair_logps(model, self._heldout_pairs(pairs_source)))
        del model
        _release_memory()
        write_json_atomically(path, baseline, indent=1)
        return baseline

    def _heldout_metrics(self, model: torch.nn.Module, prompts: list[PromptItem], baseline: dict[str, Any],
                         out: Path) -> dict[str, Any]:
        if not baseline:
            return {}
        samples = self._sample(model, prompts, list(range(len(prompts))), baseline["seed"])
        write_jsonl_atomically(out, samples)
        metrics: dict[str, Any] = {"heldout/reward_mean": statistics.fmean(s["reward"] for s in samples)}
        if baseline["pairs_file"] is None:
            return metrics
        now = self._pair_logps(model, self._heldout_pairs(baseline["pairs_file"]))
        metrics.update(_ranking("heldout", now))
        groups = flip_groups(baseline["chosen_logps"], baseline["rejected_logps"], now["chosen_logps"],
                             now["rejected_logps"])
        metrics.update({"heldout/pairs": groups.n_pairs,
                        "heldout/flips/incorrect_to_correct": groups.counts["incorrect_to_correct"],
                        "heldout/flips/correct_to_incorrect": groups.counts["correct_to_incorrect"],
                        "heldout/flips/flipped_fraction": groups.flipped_fraction})
        return metrics

    # ---------------------------------------------------------------------------------------------- rounds
    def run(self) -> OnlineResult:
        cfg = self.cfg
        first = self._check_run_dir()
        prompts, heldout_prompts, given = self._prompts()
        self._check_sizes(len(prompts))
        # after every check (the data's included): the config a resume compares with
        write_text_atomically(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        baseline = self._heldout(heldout_prompts, given)
        result = OnlineResult(self.run_dir, initial=_summary(baseline))
        result.rounds = [_read_json(round_dir(self.run_dir, r) / "round.json") for r in range(first)]
        for r in range(first, cfg.online.rounds):
            result.rounds.append(self._round(r, prompts, heldout_prompts, baseline))
            write_jsonl_atomically(self.run_dir / "online_metrics.jsonl", result.rounds)
        return result

    def _round(self, r: int, prompts: list[PromptItem], heldout_prompts: list[PromptItem],
               baseline: dict[str, Any]) -> dict[str, Any]:
        cfg, here = self.cfg, round_dir(self.run_dir, r)
        round_cfg = round_config(cfg, r)
        samples_path, pairs_path = here / "samples.jsonl", here / "pairs.jsonl"
        if pairs_path.is_file():  # saved before training: never sampled again
            samples, pairs = _read_jsonl(samples_path), _read_jsonl(pairs_path)
        else:
            if samples_path.is_file():  # a crash between the two writes: pair the saved samples
                samples = _read_jsonl(samples_path)
            else:
                positions = self._round_prompts(len(prompts), r)
                model = self._load(round_cfg.model.name)
                samples = self._sample(model, [prompts[i] for i in positions], positions,
                                       derived_seed(cfg.run.seed, _TRAIN_STAGE, r))
                del model
                _release_memory()
                write_jsonl_atomically(samples_path, samples)
            pairs = build_pairs(samples, rule=cfg.online.pair_rule, min_margin=cfg.online.min_margin)
            write_jsonl_atomically(pairs_path, pairs)
        self._print(f"round {r + 1}/{cfg.online.rounds}: {len(samples)} samples, {len(pairs)} pairs")
        step_rows = cfg.optim.micro_batch_size * cfg.optim.gradient_accumulation_steps
        if len(pairs) < step_rows:
            raise AlignlabError(f"round {r}: the judge's rewards gave {len(pairs)} pairs, fewer than one optimizer "
                                f"step's {step_rows} (micro_batch_size x gradient_accumulation_steps), so this run "
                                "cannot go on (its keys cannot change on resume): start again in a new run_dir "
                                "with a larger samples_per_prompt or prompts_per_round, or a lower min_margin")
        train_dir = here / "train"
        if not (train_dir / "final").is_dir():  # final/ is written atomically: present means trained
            Trainer(round_cfg, resume=train_dir.exists(), console=self.console).train()
            _release_memory()
        model = self._load(str(train_dir / "final"))
        # the reference's weights are those of this name (none named: a copy of the policy the round starts from)
        reference = round_cfg.model.ref_model or round_cfg.model.name if cfg.method.record.needs_ref else None
        metrics: dict[str, Any] = {"round": r, "policy": round_cfg.model.name, "reference": reference,
                                   **_sample_metrics(samples),
                                   **_pair_metrics(pairs)}
        round_pairs = load_preference_data(str(pairs_path), self.tokenizer, self.pairs_spec)[0]
        metrics.update(_ranking("pairs", self._pair_logps(model, round_pairs)))
        metrics.update(self._heldout_metrics(model, heldout_prompts, baseline, here / "heldout_samples.jsonl"))
        del model
        _release_memory()
        write_json_atomically(here / "round.json", metrics, indent=1)  # last: the round is finished
        return metrics


# ------------------------------------------------------------------------------------------------- helpers
def _release_memory() -> None:
    """Return the GPU memory of dropped models (a sampling or scoring model, a finished round's trainer) before the
    next ones load."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sample_metrics(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    rewards = [s["reward"] for s in samples]
    by_prompt: dict[int, list[float]] = {}
    for s in samples:
        by_prompt.setdefault(s["prompt_index"], []).append(s["reward"])
    return {"samples": len(samples), "samples/reward_mean": statistics.fmean(rewards),
            "samples/reward_std": statistics.pstdev(rewards),
            "samples/truncated_fraction": statistics.fmean(not s["finished"] for s in samples),
            "samples/reward_best_mean": statistics.fmean(max(v) for v in by_prompt.values()),
            "samples/reward_worst_mean": statistics.fmean(min(v) for v in by_prompt.values())}


def _pair_metrics(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    margins = [p["margin"] for p in pairs]
    return {"pairs": len(pairs), "pairs/prompts": len({p["prompt_index"] for p in pairs}),
            "pairs/margin_mean": statistics.fmean(margins) if margins else None,
            "pairs/margin_min": min(margins) if margins else None}


def _accuracy(scores: dict[str, list[float]], normalized: bool = False) -> float:
    lengths = {"chosen_lengths": scores["chosen_tokens"], "rejected_lengths": scores["rejected_tokens"]}
    correct = ranking_correct(scores["chosen_logps"], scores["rejected_logps"], **(lengths if normalized else {}))
    return correct.double().mean().item()


def _ranking(prefix: str, scores: dict[str, list[float]]) -> dict[str, float]:
    """Ranking accuracy (strict, Def. 2.3) and its length-normalised form of a policy on pairs."""
    return {f"{prefix}/ranking_accuracy": _accuracy(scores),
            f"{prefix}/ranking_accuracy_normalized": _accuracy(scores, normalized=True)}


def _summary(baseline: dict[str, Any]) -> dict[str, Any]:
    if not baseline:
        return {}
    out = {"heldout/reward_mean": baseline["reward_mean"], "heldout/prompts": baseline["prompts"]}
    if baseline.get("pairs_file") is not None:
        out.update({"heldout/pairs": len(baseline["chosen_logps"]), "heldout/ranking_accuracy": _accuracy(baseline)})
    return out


__all__ = ["RESUMABLE_KEYS", "OnlineResult", "round_config", "round_dir", "run_online"]
