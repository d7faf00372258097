"""The model card of a run's final/ (a Hugging Face README.md), and pushing final/ to the Hub.

`write_model_card` documents a finished model where it is saved: the base model and the reference, the method
and its hyper-parameters, the optimizer, the data source and its fingerprint, the final metrics, how long the
run took, the command that produced it and the full config. The metadata block is built by huggingface_hub's
ModelCardData, so the Hub reads it as it reads any card. The trainer calls it while it writes final/ (before the
manifest); it can also be called on any finished run directory.

`push_final` wraps huggingface_hub (create_repo, then upload_folder of final/); it needs the network and a
token (`hf auth login` or HF_TOKEN), and turns the Hub's errors into one-line ConfigErrors.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alignlab.cache import content_key, data_fingerprint, write_text_atomically
from alignlab.errors import ConfigError
from alignlab.train.config import TrainConfig
from alignlab.train.metrics import read_metrics
from alignlab.train.run_info import final_metrics, load_run_config, run_timing

CARD_FILE = "README.md"
# a Hub repository or dataset id: name or owner/name
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_BUILTIN_PREFIX = "alignlab/"


def examples_fingerprint(examples: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of tokenized training examples: alignlab.cache.data_fingerprint for pairs, the content key of
    every sequence's ids and labels for single-response (SFT) and unpaired examples."""
    if examples and "chosen_input_ids" in examples[0]:
        return data_fingerprint(examples)
    return content_key([{k: v for k, v in e.items() if k.endswith(("input_ids", "labels")) or k == "label"}
                        for e in examples])


def invoked_command(argv: Sequence[str] | None = None) -> str:
    """The command line that is running, as a user would type it (`alignlab train ...` for the console script
    and for `python -m alignlab.cli`)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    program = Path(argv[0])
    if program.name == "alignlab" or program.parts[-3:] == ("alignlab", "cli", "__main__.py"):
        return shlex.join(["alignlab", *argv[1:]])
    return shlex.join(argv)


def _hub_id(name: str | None) -> str | None:
    """`name` when it looks like a Hub id (not a local path, not a built-in alignlab/ model), else None."""
    if not name or name.startswith(_BUILTIN_PREFIX) or Path(name).exists() or not _HUB_ID.match(name):
        return None
    return name


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(rows: Sequence[tuple[str, Any]], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value).replace('|', '/')} |" for key, value in rows]
    return "\n".join(lines)


def model_card(
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    examples: Sequence[Mapping[str, Any]] | None = None,
    fingerprint: str | None = None,
    command: str | None = None,
) -> str:
    """The text of the model card (YAML metadata, then Markdown) of the run in `run_dir`.

    config: the run's config (default: `run_dir`/config.yaml); examples: the tokenized training examples, whose
    fingerprint (examples_fingerprint) the card records, or `fingerprint` directly; command: the command line
    that trained it (default: this process's, invoked_command). Metrics come from `run_dir`/metrics.jsonl.
    """
    from huggingface_hub import ModelCardData

    run_dir = Path(run_dir)
    config = config or load_run_config(run_dir)
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    if fingerprint is None and examples:
        fingerprint = examples_fingerprint(examples)
    command = invoked_command() if command is None else command
    method, model, data, optim = config.method, config.model, config.data, config.optim
    params = {k: v for k, v in dataclasses.asdict(method.params).items() if v is not None}
    train_data = data.train_data or "alignlab/data/samples (bundled sample pairs)"
    hub_data = _hub_id(data.train_data)
    meta = ModelCardData(
        base_model=_hub_id(model.name),
        library_name="peft" if model.lora and not model.save_merged else "transformers",
        tags=["alignlab", method.name, *(["lora"] if model.lora else [])],
        datasets=[hub_data] if hub_data else None,
        pipeline_tag="text-generation",
        alignlab={"method": method.name, "data_fingerprint": fingerprint},
    )
    timing = run_timing(run_dir, records)
    metrics = final_metrics(records)
    shown = sorted(k for k in metrics if k.startswith("eval/")) or sorted(metrics)
    if "loss" in metrics and "loss" not in shown:
        shown.append("loss")
    training = [
        ("base model", model.name),
        ("reference model", model.ref_model or (model.name if method.record.needs_ref else "none (reference-free)")),
        ("method", method.name),
        ("hyper-parameters", ", ".join(f"{k} {_fmt(v)}" for k, v in params.items()) or "none"),
        ("optimizer", (f"{optim.optimizer}, learning rate {_fmt(optim.learning_rate)}, {optim.lr_scheduler} "
                      f"schedule, warmup {optim.warmup_steps} steps, weight decay {_fmt(optim.weight_decay)}")),
        ("batch", f"{optim.micro_batch_size} per process x {optim.gradient_accumulation_steps} accumulation"),
        ("steps", f"{timing.steps}" + (f" ({timing.epochs:.3g} epochs)" if timing.epochs is not None else "")),
        ("LoRA", f"r {model.lora_r}, alpha {_fmt(model.lora_alpha)}" if model.lora else "no"),
        ("dtype / mixed precision", f"{model.dtype} / {model.mixed_precision}"),
        ("data", f"{train_data} (split {data.train_split}"
                 + (f", first {data.limit} records" if data.limit else "") + ")"),
        ("held-out data", data.eval_data or f"{data.eval_fraction:g} of the training data"),
        ("data fingerprint", f"`{fingerprint}`" if fingerprint else "not recorded"),
        ("max length / prompt", f"{data.max_length} / {data.max_prompt_length} tokens"),
        ("seed", config.run.seed),
    ]
    if timing.duration_s is not None:
        training.append(("wall time", f"{timing.duration_s:.0f} s"))
    if timing.tokens_per_s is not None:
        training.append(("tokens/s (median step)", f"{timing.tokens_per_s:.1f}"))
    body = [
        f"# {method.name} fine-tune of {model.name}",
        "",
        f"Fine-tuned with alignlab by `{method.name}` from `{model.name}`.",
        "",
        "## Training",
        "",
        _table(training, ("setting", "value")),
        "",
        "## Final metrics",
        "",
        ("Held-out metrics at the last evaluation (`eval/`), and the last training step's loss; every step is in "
        "the run's metrics.jsonl."),
        "",
        _table([(k, metrics[k]) for k in shown], ("metric", "value")) if shown else "No metrics were logged.",
        "",
        "## How it was made",
        "",
        "```bash",
        command or "(command not recorded)",
        "```",
        "",
        "The resolved config (the run's config.yaml):",
        "",
        "```yaml",
        yaml.safe_dump(config.to_dict(), sort_keys=False).rstrip(),
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("<this repository or directory>")',
        'tokenizer = AutoTokenizer.from_pretrained("<this repository or directory>")',
        "```",
        "",
    ]
    return f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(body)


def write_model_card(
    directory: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    examples: Sequence[Mapping[str, Any]] | None = None,
    fingerprint: str | None = None,
    command: str | None = None,
) -> Path:
    """Write model_card(run_dir, ...) to `directory`/README.md atomically; return its path. `directory` is
    the model directory (final/, or the temporary directory the trainer is building it in)."""
    text = model_card(run_dir, config, examples=examples, fingerprint=fingerprint, command=command)
    return write_text_atomically(Path(directory) / CARD_FILE, text)


@dataclass(frozen=True)
class PushResult:
    """What push_final did: the repository's URL, the commit's URL, and whether it wrote final/README.md first
    (a run trained before model cards existed)."""

    repo_url: str
    commit_url: str | None
    wrote_card: bool


def check_repo_id(repo_id: str) -> None:
    """ConfigError unless `repo_id` is a Hub repository id (name or owner/name)."""
    if not _HUB_ID.match(repo_id) or len(repo_id) > 96:
        raise ConfigError(f"repository id '{repo_id}' must look like owner/name (letters, digits, '-', '_', '.')")


def push_final(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Upload `run_dir`/final to the Hub model repository `repo_id` (created if missing).

    final/ is checked against its manifest first (a damaged model is never pushed) and gets its model card
    (write_model_card) when it has none. The Hub's errors (offline mode, no token, no permission) are
    ConfigErrors of one line."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    from alignlab.train.checkpoint import verify_model_dir

    check_repo_id(repo_id)
    final = Path(run_dir) / "final"
    if not final.is_dir():
        raise ConfigError(f"run directory '{run_dir}' has no final/ (the run has not finished)")
    if constants.HF_HUB_OFFLINE:
        raise ConfigError("push needs the network, and HF_HUB_OFFLINE is set; unset it to push")
    verify_model_dir(final)
    wrote = not (final / CARD_FILE).is_file()
    if wrote:
        write_model_card(final, run_dir, command="")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo_id, folder_path=final, repo_type="model",
                                   commit_message=commit_message or f"alignlab: upload {Path(run_dir).name}/final")
    except OfflineModeIsEnabled:
        raise ConfigError("push needs the network, and HF_HUB_OFFLINE is set; unset it to push") from None
    except LocalTokenNotFoundError:
        raise ConfigError("push: no Hugging Face token; run `hf auth login` or set HF_TOKEN") from None
    except HfHubHTTPError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"push to '{repo_id}' failed: {first}") from None
    return PushResult(repo_url=str(url), commit_url=getattr(commit, "commit_url", None), wrote_card=wrote)


__all__ = ["CARD_FILE", "PushResult", "check_repo_id", "examples_fingerprint", "invoked_command", "model_card",
           "push_final", "write_model_card"]
