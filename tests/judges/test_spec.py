"""load_judge: every spec form, and one-line errors for unknown kinds, fields and malformed strings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from alignlab.errors import ConfigError
from alignlab.judges import FIELDS, CallableJudge, HttpJudge, PairwiseCallableJudge, load_judge
from tests.judges import rules
from tests.judges.test_python_function import RULES_FILE


def test_python_function_specs(tmp_path):
    judge = load_judge("py:tests.judges.rules:longer")
    assert isinstance(judge, CallableJudge) and judge.score_batch(["p"], ["a b c"]) == [3.0]
    assert isinstance(load_judge(f"py:{RULES_FILE}:first_is_longer"), PairwiseCallableJudge)
    # the form an online-training recipe uses
    judge = load_judge({"kind": "callable", "function": "tests.judges.rules:longer"})
    assert judge.pairwise is False and judge("p", "one two") == 2.0
    forced = load_judge({"kind": "callable", "function": "tests.judges.rules:first_is_longer", "pairwise": True})
    assert forced.compare("p", "aa", "a") == 1.0
    batched = load_judge({"kind": "callable", "function": "tests.judges.rules:count_e", "batched": True})
    assert batched.score_batch(["p", "q"], ["eel", "x"]) == [2.0, 0.0]
    assert load_judge({"kind": "callable", "function": rules.longer}).function is rules.longer  # a function object
    assert isinstance(load_judge(rules.first_is_longer), PairwiseCallableJudge)  # a bare function


def test_spec_files(tmp_path):
    yaml_spec = tmp_path / "judge.yaml"
    yaml_spec.write_text("kind: callable\nfunction: tests.judges.rules:longer\n")
    assert isinstance(load_judge(str(yaml_spec)), CallableJudge)
    json_spec = tmp_path / "judge.json"
    json_spec.write_text(json.dumps({"kind": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                     "cache_dir": str(tmp_path / "c"), "max_retries": 0}))
    judge = load_judge(json_spec)
    assert isinstance(judge, HttpJudge) and judge.max_retries == 0 and judge.cache_dir == tmp_path / "c"


def test_every_field_is_accepted_by_its_judge():
    # FIELDS is the spec's vocabulary: each name must be a parameter of what builds the judge
    import inspect

    from alignlab.judges import judge_from_function, load_reward_model_judge

    builders = {"reward_model": load_reward_model_judge, "callable": judge_from_function, "http": HttpJudge}
    renamed = {"callable": {"function"}, "reward_model": {"model"}}  # passed positionally / resolved first
    for kind, (required, optional) in FIELDS.items():
        parameters = set(inspect.signature(builders[kind]).parameters)
        assert set(required + optional) - renamed.get(kind, set()) <= parameters, kind


@pytest.mark.parametrize(("spec", "message"), [
    ("rules", "judge 'rules' is not a judge spec; use rm:MODEL, py:module:function, https://host/v1#MODEL"),
    ("https://api.example.com/v1", "name the model after '#'"),
    ("missing.yaml", "judge spec file missing.yaml: file not found"),
    ({"function": "m:f"}, "field 'kind' is missing; it is one of reward_model, callable, http"),
    ({"kind": "htp", "base_url": "x"}, "kind 'htp' is not a judge kind \\(did you mean 'http'\\?\\)"),
    ({"kind": "http", "base_ur": "http://h/v1", "model": "m"},
     "'base_ur' is not a field of a http judge \\(did you mean 'base_url'\\?\\)"),
    ({"kind": "http", "model": "m"}, "a http judge needs the field 'base_url'"),
    ({"kind": "callable", "function": "tests.judges.rules:longer", "pairwise": "no"},
     "judge field 'pairwise' must be true or false"),
    ({"kind": "reward_model", "model": 3}, "judge spec: field 'model' must name a directory or hub id"),
    ({"kind": "http", "base_url": "http://h/v1", "model": "m", "max_retries": -1},
     "judge spec: max_retries must be an integer >= 0, got -1"),
    ({"kind": "callable", "function": None}, "a callable judge needs the field 'function'"),
    (3, "a judge spec is a string, a mapping or a function, got int"),
])
def test_bad_specs_are_one_line(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_judge(spec)
    assert "\n" not in str(info.value)


def test_bad_spec_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [http\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON") as info:
        load_judge(str(bad))
    assert "\n" not in str(info.value)
    bad.write_text("- kind: http\n")
    with pytest.raises(ConfigError, match="must hold one mapping .* got list"):
        load_judge(str(bad))


def test_loading_a_light_judge_imports_no_torch(tmp_path):
    """The command line loads the judge before its heavy imports: a Python or HTTP judge must not pull torch."""
    code = ("import sys; from alignlab.judges import load_judge; "
            "load_judge('py:tests.judges.rules:longer'); "
            "load_judge('http://127.0.0.1:9/v1#m'); "
            "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          cwd=RULES_FILE.parents[2], env={**os.environ, "ALIGNLAB_CACHE_DIR": str(tmp_path)})
    assert done.stdout.strip() == "[]", done.stderr
