"""`load_judge`: the one function that turns a judge spec into a judge.

A spec is one of
  "rm:NAME"                          reward model: a sequence-classification directory or hub id
  a local model directory            the same (a directory holding config.json)
  "py:package.module:function"       a Python function, imported; "py:path/to/file.py:function" for a file
  "https://host/v1#MODEL"            LLM judge at an OpenAI-compatible endpoint (http:// too), model after '#'
  "judge.yaml" / "judge.json"        a file holding one mapping, as below
  a mapping {kind: ..., fields}      kind reward_model, callable or http, with the fields of FIELDS[kind]
  a Python function                  a callable judge (its kind from its signature)
  a judge object                     returned as it is (anything with `pairwise` and score_batch/compare_batch)

Mapping fields (required ones first):
  reward_model: model; label_index, batch_size, max_length, device, dtype        (load_reward_model_judge)
  callable:     function ("module:function" or "file.py:function"); pairwise, batched  (judge_from_function)
  http:         base_url, model; template, system, api_key_env, params, both_orders, max_retries, backoff,
                timeout, concurrency, cache, cache_dir                            (HttpJudge)
An unknown kind or field, a missing required field or a malformed string is a one-line ConfigError naming it;
kinds, field names and field values are checked before a model loads or a named module is imported, so a typo
costs nothing.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError
from alignlab.judges.chat_completions import HttpJudge
from alignlab.judges.interface import Judge
from alignlab.judges.python_function import judge_from_function, resolve_function
from alignlab.judges.reward_model import load_reward_model_judge

# kind -> (required fields, optional fields)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "reward_model": (("model",), ("label_index", "batch_size", "max_length", "device", "dtype")),
    "callable": (("function",), ("pairwise", "batched")),
    "http": (("base_url", "model"), ("template", "system", "api_key_env", "params", "both_orders", "max_retries",
                                     "backoff", "timeout", "concurrency", "cache", "cache_dir")),
}
SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")
SPEC_FORMS = ("rm:MODEL, py:module:function, https://host/v1#MODEL, a judge .yaml/.json file or a reward-model "
              "directory")


def _suggest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_mapping(spec: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(kind, fields) of a mapping spec, every name checked."""
    for name in spec:
        if not isinstance(name, str):
            raise ConfigError(f"{where}: field names must be text, got {name!r}")
    kind = spec.get("kind")
    if kind is None:
        raise ConfigError(f"{where}: field 'kind' is missing; it is one of {', '.join(FIELDS)}")
    if kind not in FIELDS:
        raise ConfigError(f"{where}: kind {kind!r} is not a judge kind{_suggest(str(kind), FIELDS)}; "
                          f"use one of {', '.join(FIELDS)}")
    required, optional = FIELDS[kind]
    fields = {name: value for name, value in spec.items() if name != "kind"}
    names = required + optional
    for name in fields:
        if name not in names:
            raise ConfigError(f"{where}: '{name}' is not a field of a {kind} judge{_suggest(name, names)}; its "
                              f"fields are {', '.join(names)}")
    for name in required:
        if fields.get(name) is None:
            raise ConfigError(f"{where}: a {kind} judge needs the field '{name}'")
    return kind, fields


def _mapping_from_string(spec: str) -> dict[str, Any]:
    """The mapping a string spec stands for; reads a spec file."""
    if spec.startswith("rm:"):
        return {"kind": "reward_model", "model": spec[3:]}
    if spec.startswith("py:"):
        return {"kind": "callable", "function": spec[3:]}
    if spec.startswith(("http://", "https://")):
        base_url, sep, model = spec.partition("#")
        if not sep or not model:
            raise ConfigError(f"judge '{spec}': name the model after '#', e.g. "
                              "https://api.openai.com/v1#gpt-4o-mini")
        return {"kind": "http", "base_url": base_url, "model": model}
    path = Path(os.path.expanduser(spec))
    if path.suffix.lower() in SPEC_FILE_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"judge spec file {spec}: file not found")
        import yaml  # YAML is a superset of JSON: one reader for both

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"judge spec file {spec}: not valid YAML/JSON ({detail})") from None
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"judge spec file {spec}: must hold one mapping (kind: ..., fields), "
                              f"got {type(loaded).__name__}")
        return dict(loaded)
    if path.is_dir() and (path / "config.json").is_file():
        return {"kind": "reward_model", "model": spec}
    raise ConfigError(f"judge '{spec}' is not a judge spec; use {SPEC_FORMS}")


def _is_judge(spec: Any) -> bool:
    pairwise = getattr(spec, "pairwise", None)
    method = "compare_batch" if pairwise else "score_batch"
    return isinstance(pairwise, bool) and callable(getattr(spec, method, None))


def load_judge(
    spec: str | os.PathLike | Mapping[str, Any] | Callable[..., Any], *, device: str | None = None
) -> Judge:
    """The judge a spec describes (module docstring for the forms); `device` is a reward model's default device
    (a spec's own `device` field wins).

    Reward judges (`judge.pairwise` False) have score_batch(prompts, completions) -> list[float]; pairwise ones
    compare_batch(prompts, completions_a, completions_b) -> list[float] of probabilities that a is better
    (alignlab.judges.interface).
    """
    if _is_judge(spec):
        return spec  # type: ignore[return-value]
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        where = f"judge '{spec}'"
        mapping = _mapping_from_string(spec.strip())
    elif isinstance(spec, Mapping):
        where, mapping = "judge spec", dict(spec)
    elif callable(spec):
        return judge_from_function(spec)
    else:
        raise ConfigError(f"a judge spec is a string, a mapping or a function, got {type(spec).__name__}; "
                          f"strings are {SPEC_FORMS}")
    kind, fields = _check_mapping(mapping, where)
    if kind == "callable":  # its errors name the function reference
        function = fields["function"]
        if isinstance(function, str):
            function = resolve_function(function)
        return judge_from_function(function, pairwise=fields.get("pairwise"),
                                   batched=fields.get("batched", False))
    try:
        if kind == "http":
            return HttpJudge(**fields)
        model = fields.pop("model")
        if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
            raise ConfigError(f"field 'model' must name a directory or hub id, got {model!r}")
        fields.setdefault("device", device)
        return load_reward_model_judge(model, **fields)
    except ConfigError as exc:  # a field's value: say which spec it is in
        raise ConfigError(f"{where}: {exc}") from None


__all__ = ["FIELDS", "SPEC_FORMS", "load_judge"]
