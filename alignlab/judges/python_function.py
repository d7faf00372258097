"""Judges from Python functions, and the `module:function` / `file.py:function` reference that names one.

A reward function takes (prompt, completion) and returns a number; a pairwise function takes (prompt, a, b) and
returns a probability in [0, 1] or a bool that `a` is better. Which kind a function is comes from its required
positional parameters (two or three) unless `pairwise` says. A batched function (`batched=True`) takes the lists
instead, (prompts, completions) or (prompts, completions_a, completions_b), and returns one value per example.
Naming a function imports its module, which runs that module's code: that is what the user asks for by naming
it. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError
from alignlab.judges.interface import (
    checked_inputs,
    checked_probabilities,
    checked_rewards,
    judge_name,
)


def _check_function(function: Any, batched: Any) -> None:
    if not callable(function):
        raise ConfigError(f"a callable judge needs a function, got {type(function).__name__}")
    if not isinstance(batched, bool):
        raise ConfigError(f"judge field 'batched' must be true or false, got {batched!r}")


def _call(function: Callable[..., Any], batched: bool, *lists: list[str]) -> Any:
    """The function's values for the examples of `lists`, unchecked: one call per example, or one call for all."""
    if not batched:
        return [function(*example) for example in zip(*lists)]
    return function(*lists)


def _who(judge: CallableJudge | PairwiseCallableJudge) -> str:
    return f"{judge.name} (batched)" if judge.batched else judge.name


class CallableJudge:
    """A reward judge from a function (prompt, completion) -> number, or with batched=True (prompts,
    completions) -> [n] numbers; each value is checked finite."""

    pairwise = False

    def __init__(self, function: Callable[..., Any], *, batched: bool = False) -> None:
        _check_function(function, batched)
        self.function, self.batched = function, batched
        self.name = judge_name(function)

    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """The function's reward for each (prompt, completion), as finite floats."""
        prompts, completions = checked_inputs(prompts=prompts, completions=completions)
        values = _call(self.function, self.batched, prompts, completions)
        return checked_rewards(values, len(prompts), _who(self))

    def __call__(self, prompt: str, completion: str) -> float:
        """The reward of one completion."""
        return self.score_batch([prompt], [completion])[0]


class PairwiseCallableJudge:
    """A pairwise judge from a function (prompt, a, b) -> probability in [0, 1] or bool that `a` is better, or
    with batched=True (prompts, completions_a, completions_b) -> [n] of them.

    The function is called as given: position bias, if it has any, is the caller's to cancel (win_rate
    randomises the order).
    """

    pairwise = True

    def __init__(self, function: Callable[..., Any], *, batched: bool = False) -> None:
        _check_function(function, batched)
        self.function, self.batched = function, batched
        self.name = judge_name(function)

    def compare_batch(
        self, prompts: Sequence[str], completions_a: Sequence[str], completions_b: Sequence[str]
    ) -> list[float]:
        """The function's probability that a is better, for each (prompt, a, b)."""
        prompts, completions_a, completions_b = checked_inputs(
            prompts=prompts, completions_a=completions_a, completions_b=completions_b)
        values = _call(self.function, self.batched, prompts, completions_a, completions_b)
        return checked_probabilities(values, len(prompts), _who(self))

    def compare(self, prompt: str, a: str, b: str) -> float:
        """Probability that `a` is better than `b`."""
        return self.compare_batch([prompt], [a], [b])[0]

    def __call__(self, prompt: str, a: str, b: str) -> float:
        """compare(prompt, a, b)."""
        return self.compare(prompt, a, b)


def is_pairwise_function(function: Callable[..., Any]) -> bool:
    """True for a function of (prompt, a, b), False for one of (prompt, completion), from its required
    positional parameters; a one-line ConfigError when that count is neither, or the signature is hidden."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        raise ConfigError(
            f"cannot read the signature of {judge_name(function)}; set pairwise: true or false"
        ) from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty]
    if len(required) in (2, 3):
        return len(required) == 3
    raise ConfigError(
        f"{judge_name(function)} takes {len(required)} required positional arguments; a reward judge takes "
        "(prompt, completion), a pairwise judge (prompt, a, b) (or set pairwise: true or false)"
    )


def judge_from_function(
    function: Callable[..., Any], *, pairwise: bool | None = None, batched: bool = False
) -> CallableJudge | PairwiseCallableJudge:
    """The judge of `function`: pairwise when `pairwise` is True, a reward judge when False, and when None the
    kind its signature says (is_pairwise_function); `batched`: the function takes lists (module docstring)."""
    _check_function(function, batched)
    if pairwise is not None and not isinstance(pairwise, bool):
        raise ConfigError(f"judge field 'pairwise' must be true or false, got {pairwise!r}")
    if pairwise is None:
        pairwise = is_pairwise_function(function)
    judge_class = PairwiseCallableJudge if pairwise else CallableJudge
    return judge_class(function, batched=batched)


def _module_from_file(path: Path, reference: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"judge function '{reference}': {path} is not a file")
    real = path.resolve()
    # one module per file, named after its real path, so two judge files called judge.py do not collide
    name = f"_alignlab_judge_{hashlib.sha256(str(real).encode()).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise ConfigError(f"judge function '{reference}': cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolve_function(reference: str) -> Callable[..., Any]:
    """The function that `reference` names: `package.module:function` (imported as any module; attributes may
    be dotted, `module:Class.method`) or `path/to/file.py:function` (a file, relative to the working
    directory). Errors (a malformed reference, a missing module, file or attribute, not callable) are one-line
    ConfigErrors; an exception raised by the module's own code while it imports propagates as it is."""
    module_name, sep, attribute = reference.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(
            f"judge function '{reference}' must look like package.module:function or path/to/file.py:function"
        )
    if module_name.endswith(".py"):
        module = _module_from_file(Path(os.path.expanduser(module_name)), reference)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise  # the module exists; an import inside it failed: its own traceback says where
            raise ConfigError(
                f"judge function '{reference}': no module named '{exc.name}' (is it installed, or on PYTHONPATH? "
                "a file can be named as path/to/file.py:function)"
            ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"judge function '{reference}': {module_name} has no attribute '{attribute}'")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"judge function '{reference}' is a {type(target).__name__}, not callable")
    return target


__all__ = [
    "CallableJudge",
    "PairwiseCallableJudge",
    "is_pairwise_function",
    "judge_from_function",
    "resolve_function",
]
