"""The method registry: every record's loss runs on its statistics, keys apply where the records say, and no
code outside the registry tests a method's name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from alignlab.errors import ConfigError
from alignlab.losses import dpo_loss, tdpo_loss
from alignlab.losses.registry import (
    METHODS,
    PairStats,
    SequenceStats,
    UnpairedStats,
    get_method,
    methods_with_key,
    param_defaults,
)
from alignlab.train.config import METHOD_KEYS, load_config

PACKAGE = Path(__file__).resolve().parents[2] / "alignlab"


def _pair_stats(b: int = 5, seed: int = 0) -> PairStats:
    g = torch.Generator().manual_seed(seed)
    r = lambda: (-20 - 10 * torch.rand(b, generator=g, dtype=torch.float64)).requires_grad_()
    lengths = torch.randint(3, 9, (b,), generator=g)
    return PairStats(r(), r(), lengths, lengths + 1, r().detach(), r().detach(),
                     torch.rand(b, generator=g, dtype=torch.float64).requires_grad_(),
                     torch.rand(b, generator=g, dtype=torch.float64).requires_grad_())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_loss_runs_on_its_statistics_with_its_defaults(name):
    method = get_method(name)
    values = {"label_smoothing": 0.1} if name == "cdpo" else {}
    params = method.make_params(values)
    if method.paired:
        out = method.loss(_pair_stats(), params)
        assert out.chosen_rewards.shape == out.rejected_rewards.shape == (5,)
    elif method.unpaired:
        s = _pair_stats()
        out = method.loss(UnpairedStats(s.chosen_logps, s.ref_chosen_logps, s.chosen_lengths,
                                        torch.tensor([True, False, True, True, False]), torch.tensor(0.3)), params)
    else:
        logps = -torch.rand(3, 6, dtype=torch.float64).requires_grad_()
        mask = torch.ones(3, 6, dtype=torch.bool)
        out = method.loss(SequenceStats(logps.sum(-1), mask.sum(-1), logps, mask), params)
    assert out.losses.shape[0] in (3, 5) and torch.isfinite(out.losses).all()
    out.losses.sum().backward()


def test_records_route_to_the_papers_losses():
    s = _pair_stats()
    want = dpo_loss(s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps, beta=0.1)[0]
    torch.testing.assert_close(get_method("dpo").loss(s, get_method("dpo").make_params({})).losses, want)
    m = get_method("tdpo2")
    got = m.loss(s, m.make_params({"tdpo_alpha": 0.3, "beta": 0.2})).losses
    want = tdpo_loss(s.chosen_logps - s.ref_chosen_logps, s.rejected_logps - s.ref_rejected_logps, s.chosen_kl,
                     s.rejected_kl, beta=0.2, alpha=0.3, variant="tdpo2")[0]
    torch.testing.assert_close(got, want)


def test_keys_apply_where_the_records_say():
    assert methods_with_key("tdpo_alpha") == ("tdpo2",)
    assert set(methods_with_key("beta")) == {"dpo", "ipo", "cdpo", "fdpo", "tdpo1", "tdpo2", "simpo", "cpo", "kto"}
    assert set(METHOD_KEYS) == {k for m in METHODS.values() for k in m.param_keys()}
    for name, method in METHODS.items():
        others = [k for k in METHOD_KEYS if k not in method.param_keys()]
        for key in others:
            default = next(iter(param_defaults(key).values()))
            value = 1 if default is None else str(default).lower() if isinstance(default, bool) else default
            with pytest.raises(ConfigError, match=f"'{key}' applies to method"):
                load_config(overrides=[f"method={name}", f"{key}={value}"])


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "nca_pair", "robust", "bco_pair", "sppo_hard",
                                       "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
                                       "sft", ["sigmoid", "sft"]])
def test_dpo_loss_types_reach_the_loss(loss_type):
    s = _pair_stats()
    cfg = load_config(overrides=["method=dpo", f"loss_type={loss_type}".replace("'", "")])
    got = cfg.method.record.loss(s, cfg.method.params).losses
    want = dpo_loss(s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps, beta=0.1,
                    loss_type=loss_type, chosen_lengths=s.chosen_lengths, rejected_lengths=s.rejected_lengths)[0]
    if "sft" in loss_type:  # the NLL is spread over the rows by the step's token count: only the mean is TRL's
        got, want = got.mean(), want.mean()
    torch.testing.assert_close(got, want)


NAMES = "|".join(sorted(METHODS, key=len, reverse=True))
NAME_TEST = re.compile(rf"""(==|!=|\bin\b)\s*\(?[^#\n]*["']({NAMES})["']""")


def test_no_method_name_is_tested_outside_the_registry():
    """`method == "dpo"`, `in ("tdpo1", ...)` and the like live in losses/registry.py only."""
    assert NAME_TEST.search('if cfg.method == "dpo":') and NAME_TEST.search('method in ("tdpo1", "tdpo2")')
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel == "losses/registry.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if NAME_TEST.search(code) and "method" in code:
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
