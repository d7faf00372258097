"""Frozen Lake testbed: exact optimum, data designs, IFT's state mix, training and the end-to-end run."""

from __future__ import annotations

import json
import math
from collections import deque

import numpy as np
import pytest
import torch

from alignlab.cli import main as cli_main
from alignlab.cli.testbed import frozenlake_main
from alignlab.errors import AlignlabError, ConfigError
from alignlab.testbeds import frozenlake as fl

GAMMA = 0.9


def _distances_to_goal(rows: list[str]) -> dict[tuple[int, int], int]:
    """Independent BFS (written over (row, col) cells) of the number of moves to a goal avoiding holes."""
    nrow, ncol = len(rows), len(rows[0])
    dist = {(r, c): 0 for r in range(nrow) for c in range(ncol) if rows[r][c] == "G"}
    queue = deque(dist)
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            p = (r + dr, c + dc)
            if 0 <= p[0] < nrow and 0 <= p[1] < ncol and p not in dist and rows[p[0]][p[1]] in "SF":
                dist[p] = dist[(r, c)] + 1
                queue.append(p)
    return dist


@pytest.fixture(scope="module")
def lake4():
    lake = fl.parse_map(fl.PAPER_MAP_4X4)
    v, q = fl.value_iteration(lake, GAMMA)
    return lake, v, q, fl.optimal_policy(lake, q)


def test_value_iteration_matches_hand_values_and_bellman(lake4):
    _lake, v, q, pi = lake4
    # value iteration's closed form here: V*(s) = 0.9^(d(s) - 1)
    hand = {0: 0.6561, 1: 0.729, 2: 0.81, 3: 0.9, 4: 0.59049, 7: 1.0, 8: 0.6561, 12: 0.729, 13: 0.81, 14: 0.9,
            15: 1.0}
    for s, val in hand.items():
        assert v[s] == pytest.approx(val, abs=1e-12)
    assert all(v[s] == 0 for s in (5, 6, 9, 10, 11))
    dist = _distances_to_goal(list(fl.PAPER_MAP_4X4))
    for (r, c), d in dist.items():
        if d > 0:
            assert v[4 * r + c] == pytest.approx(GAMMA ** (d - 1), abs=1e-12)
    # Bellman optimality, with transitions rebuilt here from the move definitions
    moves = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}
    for s in range(16):
        r, c = divmod(s, 4)
        if fl.PAPER_MAP_4X4[r][c] in "HG":
            continue
        for a, (dr, dc) in moves.items():
            r2, c2 = min(max(r + dr, 0), 3), min(max(c + dc, 0), 3)
            cell = fl.PAPER_MAP_4X4[r2][c2]
            target = 1.0 if cell == "G" else (0.0 if cell == "H" else GAMMA * v[4 * r2 + c2])
            assert q[s, a] == pytest.approx(target, abs=1e-12)
        assert v[s] == pytest.approx(q[s].max(), abs=1e-12)
    expected = {0: 2, 1: 2, 2: 2, 3: 1, 7: 1, 8: 1, 12: 2, 13: 2, 14: 2, 15: 3}
    for s, a in expected.items():
        assert np.array_equal(pi[s], np.eye(4)[a])
    assert np.allclose(pi[4], [0, 0.5, 0, 0.5])  # the documented tie at (1, 0): DOWN or UP


def test_tie_handling_is_uniform_and_can_be_excluded():
    lake = fl.parse_map("GFSFG")
    v, q = fl.value_iteration(lake, GAMMA)
    pi = fl.optimal_policy(lake, q)
    assert np.allclose(pi[2], [0.5, 0, 0.5, 0])  # LEFT and RIGHT both reach a goal in 2 moves
    assert fl.tie_states(lake, pi) == [2]
    route = fl.optimal_rollout(lake, pi, v, lake.start)
    assert route.actions == (0, 0)  # lowest action id among the tied optimal ones
    four = fl.parse_map(fl.PAPER_MAP_4X4)
    cfg = fl.FrozenLakeConfig(steps=1, exclude_ties=True)
    res = fl.run_scenario("routes", four, "routes", ["sft"], [0], cfg)
    assert 4 not in res["scored_states_all"] and len(res["scored_states_all"]) == 10
    res = fl.run_scenario("routes", four, "routes", ["sft"], [0], fl.FrozenLakeConfig(steps=1))
    assert res["tie_states"] == [4] and len(res["scored_states_all"]) == 11


@pytest.mark.parametrize("desc, fragment", [
    (["SFFF", "FXHF", "FHHG"], "row 2 column 2: character 'X'"),
    (["SFFF", "FHH", "FHHG"], "row 2 has 3 columns but row 1 has 4"),
    (["FFFF", "FHHG"], "exactly one 'S', found 0"),
    (["SFFS", "FHHG"], "exactly one 'S', found 2"),
    (["SFFF", "FHHF"], "no goal"),
    ("", "empty"),
])
def test_map_errors_are_one_line_alignlab_errors(desc, fragment):
    with pytest.raises(AlignlabError) as err:
        fl.parse_map(desc, source="--map")
    assert fragment in str(err.value) and str(err.value).startswith("--map") and "\n" not in str(err.value)


def test_map_string_forms_and_unreachable_goal():
    assert fl.parse_map("SFFF,FHHF/FHHG\nFFFF").rows == fl.PAPER_MAP_4X4
    lake = fl.parse_map("SHG")
    v, q = fl.value_iteration(lake, GAMMA)
    with pytest.raises(AlignlabError, match="no hole-free path"):
        fl.build_data(lake, "routes", q, fl.optimal_policy(lake, q), v)


def test_routes_and_branching_data(lake4):
    lake, v, q, pi = lake4
    routes = fl.build_data(lake, "routes", q, pi, v)
    assert routes.chosen[0].states == (0, 1, 2, 3, 7) and routes.chosen[0].actions == (2, 2, 2, 1, 1)
    assert routes.rejected[0].states == (0, 4, 8, 12, 13, 14, 15)
    assert routes.rejected[0].actions == (1, 1, 1, 2, 2, 2, 3)
    assert routes.targets == [routes.route]
    # nearest miss on this map is always a wall bump, so rejected = (s, bump) + chosen
    near = fl.build_data(lake, "branching", q, pi, v, "nearest")
    bumps = {0: 0, 1: 3, 2: 3, 3: 2, 7: 2}
    for chosen, rejected in zip(near.chosen, near.rejected):
        s = chosen.states[0]
        assert rejected.states == (s,) + chosen.states and rejected.actions == (bumps[s],) + chosen.actions
    worst = fl.build_data(lake, "branching", q, pi, v)  # 'worst' is the default
    assert worst.rejected[0] == routes.rejected[0]  # DOWN at S, then optimal (DOWN at the tie): the other route
    assert worst.rejected[1].states == (1, 0, 1, 2, 3, 7) and worst.rejected[1].actions[0] == 0
    for pair in zip(worst.chosen, worst.rejected):
        s = pair[0].states[0]
        assert q[s, pair[1].actions[0]] < v[s]  # the rejected first action is sub-optimal
    with pytest.raises(ConfigError):
        fl.build_data(lake, "branching", q, pi, v, "best")


def test_ift_state_mix_lambda_zero_and_shift(lake4):
    lake, *_ = lake4
    states = torch.tensor([[0, 1, 2, 3, 7], [4, 8, 12, 0, 0]])
    transitions = torch.from_numpy(lake.transitions)
    greedy = torch.full((1, 16), 2)  # every state's greedy action is RIGHT
    plain = fl.ift_state_inputs(states, greedy, transitions, 0.0, 16)
    assert torch.equal(plain[0], torch.nn.functional.one_hot(states, 16).float())
    mixed = fl.ift_state_inputs(states, greedy, transitions, 0.2, 16)[0]
    # guess at t = RIGHT from the true state at t - 1 (a wall keeps it): row 0 -> 0, 1, 2, 3, 3; row 1 -> 4, 5, 9, 13
    guesses = [[0, 1, 2, 3, 3], [4, 5, 9, 13, 1]]
    for b in range(2):
        for t in range(4 if b else 5):
            expect = torch.zeros(16)
            expect[states[b, t]] += 0.8
            expect[guesses[b][t]] += 0.2
            assert torch.allclose(mixed[b, t], expect)
    # per-member greedy actions are used per member
    two = fl.ift_state_inputs(states[:1], torch.stack([greedy[0], torch.full((16,), 1)]), transitions, 1.0, 16)
    assert two[1, 0, 1].argmax() == 4 and two[0, 0, 1].argmax() == 1


def test_ift_with_lambda_gamma_zero_trains_like_sft(lake4):
    lake, v, q, pi = lake4
    data = fl.build_data(lake, "branching", q, pi, v)
    cfg = fl.FrozenLakeConfig(steps=15, ift_lambda=0.0, ift_gamma=0.0)
    final, curves = fl.train_methods(lake, data, ["sft", "ift"], [3], cfg)
    assert torch.allclose(curves[:, 0], curves[:, 1], atol=1e-6)
    assert torch.allclose(final[0], final[1], atol=1e-6)
    final2, _ = fl.train_methods(lake, data, ["ift"], [3], fl.FrozenLakeConfig(steps=15))
    assert not torch.allclose(final2[0], final[0], atol=1e-4)  # the default lambda / gamma do change training


def test_pair_losses_start_at_log2_and_every_loss_decreases(lake4):
    lake, v, q, pi = lake4
    for design in fl.DESIGNS:
        data = fl.build_data(lake, design, q, pi, v)
        _, curves = fl.train_methods(lake, data, fl.METHODS, [0, 1], fl.FrozenLakeConfig(steps=30))
        for i, m in enumerate(fl.METHODS):
            if m in ("dpo", "tdpo1", "tdpo2"):
                assert torch.allclose(curves[0, i], torch.full((2,), math.log(2.0)), atol=1e-6)
            assert (curves[-1, i] < 0.8 * curves[0, i]).all(), (design, m, curves[[0, -1], i])


def test_batched_members_are_independent(lake4):
    lake, v, q, pi = lake4
    data = fl.build_data(lake, "routes", q, pi, v)
    cfg = fl.FrozenLakeConfig(steps=20)
    together, _ = fl.train_methods(lake, data, fl.METHODS, [0, 1], cfg)
    for i, m in enumerate(fl.METHODS):
        alone, _ = fl.train_methods(lake, data, [m], [1], cfg)
        assert torch.allclose(together[i, 1], alone[0], atol=1e-5), m


def test_pi_star_net_fits_the_table(lake4):
    lake, _, _, pi = lake4
    table, _ = fl.fit_optimal_net(lake, pi, fl.FrozenLakeConfig(), seed=0)
    live = [s for s in range(16) if not lake.terminal[s]]
    assert fl.policy_mse(table, pi, live) < 1e-4


def test_smoke_run_all_scenarios_writes_json_and_png(tmp_path):
    res = fl.run_frozenlake(seeds=1, out_dir=tmp_path, steps=3)
    assert set(res["scenarios"]) == set(fl.SCENARIOS)
    saved = json.loads((tmp_path / "frozenlake.json").read_text())
    assert saved["config"]["steps"] == 3 and saved["config"]["seeds"] == [0]
    for name in fl.SCENARIOS:
        png = tmp_path / f"frozenlake_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert set(saved["scenarios"][name]["methods"]) == set(fl.METHODS)
        for m in fl.METHODS:
            assert 0 <= saved["scenarios"][name]["methods"][m]["mse_all"]["mean"] <= 1
    text = fl.format_tables(res)
    assert "| TDPO2 |" in text and "branching_large" in text


def test_determinism_under_a_seed(tmp_path):
    kw = {"scenarios": "routes,branching", "seeds": 2, "steps": 10, "plot": False}
    a = fl.run_frozenlake(out_dir=tmp_path / "a", **kw)
    b = fl.run_frozenlake(out_dir=tmp_path / "b", **kw)
    c = fl.run_frozenlake(out_dir=tmp_path / "c", base_seed=7, **kw)
    for name in ("routes", "branching"):
        for m in fl.METHODS:
            ra, rb, rc = (r["scenarios"][name]["methods"][m]["mse_all"]["per_seed"] for r in (a, b, c))
            assert ra == rb and ra != rc
    assert not (tmp_path / "a" / "frozenlake_routes.png").exists()


def test_main_honours_options_and_rejects_bad_ones(tmp_path, capsys):
    out = tmp_path / "o"
    code = frozenlake_main(["--scenarios", "branching", "--methods", "sft,dpo", "--seeds", "2", "--base-seed", "3",
                    "--steps", "4", "--lr", "0.05", "--hidden", "8", "--out", str(out), "--dpo-beta", "0.2",
                    "--branch-rule", "nearest", "--map", "SFF,FHF,FFG", "--no-plot", "--threads", "1"])
    assert code == 0
    saved = json.loads((out / "frozenlake.json").read_text())
    cfg = saved["config"]
    assert (cfg["steps"], cfg["lr"], cfg["hidden"], cfg["dpo_beta"], cfg["seeds"], cfg["branch_rule"]) == \
        (4, 0.05, 8, 0.2, [3, 4], "nearest")
    assert saved["methods"] == ["sft", "dpo"] and saved["scenarios"]["branching"]["map"] == ["SFF", "FHF", "FFG"]
    assert not list(out.glob("*.png"))
    assert "| DPO |" in capsys.readouterr().out
    # user errors raise; the CLI (alignlab testbed frozenlake) prints them as one line with exit code 2
    with pytest.raises(AlignlabError, match="scenario 'maze' is unknown"):
        frozenlake_main(["--scenarios", "maze", "--out", str(out)])
    for bad in (["--map", "SFX,FFG"], ["--ift-lambda", "1.5"], ["--seeds", "0"]):
        with pytest.raises(AlignlabError):
            frozenlake_main([*bad, "--out", str(out)])
    assert cli_main(["testbed", "frozenlake", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("alignlab: ") and not err[0].startswith("alignlab: alignlab:")


def test_matches_gymnasium_transitions_when_installed():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("FrozenLake-v1", desc=list(fl.GYM_MAP_8X8), is_slippery=False)
    lake = fl.parse_map(fl.GYM_MAP_8X8)
    for s, row in env.unwrapped.P.items():
        for a, [(_, s2, reward, done)] in row.items():
            if not lake.terminal[s]:
                assert s2 == lake.step(s, a) and reward == float(lake.goal[s2]) and done == lake.terminal[s2]
