"""Judges from Python functions: the kind from the signature, checked return values, and function references."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alignlab.errors import AlignlabError, ConfigError
from alignlab.judges import CallableJudge, PairwiseCallableJudge, judge_from_function, resolve_function
from tests.judges import rules

RULES_FILE = Path(rules.__file__)


def test_reward_function_scores_each_completion():
    seen = []

    def reward(prompt, completion):
        seen.append((prompt, completion))
        return len(completion) - len(prompt)

    judge = judge_from_function(reward)
    assert isinstance(judge, CallableJudge) and judge.pairwise is False
    assert judge.score_batch(["p", "pp"], ["abc", "a"]) == [2.0, -1.0]
    assert seen == [("p", "abc"), ("pp", "a")]
    assert judge("", "xy") == 2.0


def test_pairwise_function_compares():
    judge = judge_from_function(rules.first_is_longer)
    assert isinstance(judge, PairwiseCallableJudge) and judge.pairwise is True
    assert judge.compare_batch(["p", "p"], ["long", "a"], ["b", "longer"]) == [1.0, 0.0]
    assert judge.compare("p", "aa", "a") == 1.0 and judge("p", "a", "aa") == 0.0


@pytest.mark.parametrize(("function", "pairwise"), [
    (lambda prompt, completion, scale=2.0: 0.0, False),  # a default does not count
    (lambda prompt, a, b, *, temperature=1.0: 0.5, True),
    (lambda *args: 0.0, None),  # no required positional parameter: the kind must be said
])
def test_kind_from_signature(function, pairwise):
    if pairwise is None:
        with pytest.raises(ConfigError, match="0 required positional arguments.*set pairwise"):
            judge_from_function(function)
        assert judge_from_function(function, pairwise=True).pairwise is True
    else:
        assert judge_from_function(function).pairwise is pairwise


def test_hidden_signature_needs_pairwise():
    with pytest.raises(ConfigError, match="cannot read the signature .*set pairwise"):
        judge_from_function(max)
    assert judge_from_function(max, pairwise=False).score_batch(["1"], ["2"]) == [2.0]  # max("1", "2") is "2"


@pytest.mark.parametrize(("function", "message"), [
    (lambda prompt, completion: math.nan, "returned nan for example 1; a reward must be a finite number"),
    (lambda prompt, completion: "many", "returned 'many' for example 1"),
    (lambda prompt, completion: None, "returned None for example 1"),
])
def test_reward_values_are_checked(function, message):
    judge = CallableJudge(lambda p, c: 1.0 if c == "ok" else function(p, c))
    with pytest.raises(AlignlabError, match=message):
        judge.score_batch(["", ""], ["ok", "bad"])


def test_probabilities_are_checked_and_lengths_must_match():
    judge = PairwiseCallableJudge(lambda prompt, a, b: 1.5)
    with pytest.raises(AlignlabError, match="returned 1.5 for example 0; a pairwise judge returns a probability"):
        judge.compare("p", "a", "b")
    with pytest.raises(AlignlabError, match="2 prompts, 1 completions_a, 2 completions_b"):
        judge.compare_batch(["p", "q"], ["a"], ["b", "c"])
    with pytest.raises(AlignlabError, match="completions must be a list of strings"):
        CallableJudge(rules.longer).score_batch(["p"], "abc")
    with pytest.raises(AlignlabError, match=r"prompts\[1\] is a int"):
        CallableJudge(rules.longer).score_batch(["p", 3], ["a", "b"])
    with pytest.raises(ConfigError, match="needs a function, got int"):
        judge_from_function(3)


def test_resolve_module_and_file_references(tmp_path):
    assert resolve_function("tests.judges.rules:longer") is rules.longer
    from_file = resolve_function(f"{RULES_FILE}:first_is_longer")
    assert from_file("p", "aa", "a") is True and from_file is not rules.first_is_longer  # its own module
    assert resolve_function(f"{RULES_FILE}:first_is_longer") is from_file  # imported once
    # two files of the same name are two modules
    for name, value in (("one", 1.0), ("two", 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "judge.py").write_text(f"def reward(prompt, completion):\n    return {value}\n")
    one, two = (resolve_function(f"{tmp_path / n / 'judge.py'}:reward") for n in ("one", "two"))
    assert (one("", ""), two("", "")) == (1.0, 2.0)
    assert resolve_function("os.path:join") is __import__("os").path.join


@pytest.mark.parametrize(("reference", "message"), [
    ("longer", "must look like package.module:function"),
    ("tests.judges.rules:", "must look like"),
    ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
    ("tests.judges.no_such:f", "no module named 'tests.judges.no_such'"),
    ("tests.judges.rules:shorter", "tests.judges.rules has no attribute 'shorter'"),
    ("tests.judges.rules:NOT_CALLABLE", "is a int, not callable"),
    ("missing/judge.py:f", "missing/judge.py is not a file"),
])
def test_bad_references_are_one_line(reference, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_function(reference)
    assert "\n" not in str(info.value)


def test_an_import_error_inside_the_module_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "broken_judge_module.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        resolve_function("broken_judge_module:f")


def test_batched_functions_get_the_lists_once():
    calls = []

    def reward(prompts, completions):
        calls.append((prompts, completions))
        return [len(c) for c in completions]

    judge = judge_from_function(reward, batched=True)
    assert judge.score_batch(["p", "q", "r"], ["a", "bb", ""]) == [1.0, 2.0, 0.0]
    assert calls == [(["p", "q", "r"], ["a", "bb", ""])]
    pairwise = judge_from_function(lambda ps, xs, ys: [len(x) > len(y) for x, y in zip(xs, ys)], batched=True)
    assert pairwise.pairwise and pairwise.compare_batch(["p", "p"], ["aa", "a"], ["b", "bb"]) == [1.0, 0.0]
    with pytest.raises(AlignlabError, match=r"\(batched\) returned 1 values for 2 examples"):
        judge_from_function(lambda ps, cs: [0.0], batched=True).score_batch(["p", "q"], ["a", "b"])
    with pytest.raises(AlignlabError, match=r"\(batched\) returned 0.5 for 2 examples"):
        judge_from_function(lambda ps, cs: 0.5, batched=True).score_batch(["p", "q"], ["a", "b"])
    with pytest.raises(ConfigError, match="'batched' must be true or false"):
        judge_from_function(reward, batched="yes")
