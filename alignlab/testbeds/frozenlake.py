"""Frozen Lake policy-alignment testbed (IFT paper, Hua et al., arXiv 2405.11870, §5.3, App. B.2, Fig. 3).

The paper aligns a two-layer MLP policy on a deterministic Frozen Lake grid with SFT, DPO, ORPO and IFT and
measures the MSE between the trained and the optimal state-action table pi(a|s). No code was released; this module
is alignlab's reconstruction (README, Testbed: Frozen Lake) extended with SimPO, TDPO1 and TDPO2.

Environment (gymnasium FrozenLake conventions, gymnasium not needed): a map is a list of equal-length row strings
over 'S' (start), 'F' (frozen), 'H' (hole), 'G' (goal); state s = row * ncol + col; actions 0 LEFT, 1 DOWN,
2 RIGHT, 3 UP; moving into a wall leaves the state unchanged; holes and goals are terminal; non-slippery; reward 1
on entering a goal, else 0; discount `env_gamma` (0.9).

Optimal policy: value iteration in float64 gives V* and Q*. Ties: every action whose Q* is within TIE_TOL (1e-9)
of the state's best is optimal, and pi*(.|s) is uniform over them (on the 4x4 paper map: DOWN/UP at (1,0)). A
state from which no goal is reachable has Q* = 0 for all actions, so pi* is uniform there. Rows of terminal states
are set to uniform and never scored. Where one action must be picked (the optimal route, continuations), the
lowest action id among the optimal ones is taken.

Policy: one-hot(nS) -> Linear(nS, H) -> ReLU -> Linear(H, 4) -> softmax, with nn.Linear's default init drawn from a
per-seed generator. Every method in a seed starts from the same network pi_0 and uses the same optimizer (Adam,
shared lr and step count); pi_0 is also the reference of DPO/TDPO1/TDPO2 (pi_ref = pi_0). All
methods x seeds of a scenario train together as one stacked ensemble (independent parameters, elementwise Adam), so
the batching changes nothing but speed. A trajectory is a sequence of (s_t, a_t) and its log-prob terms are
log pi(a_t | s_t); the losses are alignlab.losses' functions applied to those per-sequence statistics:
  SFT    sft_loss(seq_mean) on the target trajectories
  IFT    ift_loss on log pi(a_t | x~_t), x~_t = (1 - lam) onehot(s_t) + lam onehot(s^_t), where s^_0 = s_0 and
         s^_t = step(s_{t-1}, argmax_a pi(a | onehot(s_{t-1}))) (no gradient): the teacher-forced one-step-ahead
         guess of IFT (arXiv 2405.11870, Sec. 4) moved from token embeddings to the state input (ift_state_inputs)
  DPO    dpo_loss(sum log-probs, reference sums)          TDPO1/2  tdpo_loss with the exact forward
  SimPO  simpo_loss(sum log-probs, lengths)                        KL(pi_ref || pi_theta) over the 4 actions,
  ORPO   orpo_loss(sum log-probs, lengths)                         summed over the trajectory's states

Preference-data designs (scenario = design x map; "routes"/"branching" on the 4x4 paper map, "*_large" on the
larger map, gymnasium's 8x8 map by default):
  routes     the paper's design. chosen/target = the optimal route from S (greedy rollout of pi*); rejected =
             the shortest hole-free path from S to a goal that shares no state with the optimal route except S
             and the goal (BFS, neighbours in action order). It tells a learner which action to take on the
             optimal route's states only, and that the other route is worse *as a whole*. It says nothing about
             off-route states, and on the rejected route most actions are themselves optimal for their states
             (on the 4x4 map all but the first), so a pair method that lowers the rejected route's actions lowers
             optimal actions at states only that route visits.
  branching  alignlab's design. For every state s on the optimal route, chosen = the optimal continuation from
             s, rejected = one sub-optimal action at s followed by optimal play (branch_rule 'worst', the
             default: the non-hole action with the lowest Q* among those from which a goal stays reachable,
             else the lowest-Q* sub-optimal action, the continuation ending there; 'nearest': the highest-Q*
             sub-optimal action; ties to the lowest id). SFT and IFT train on the chosen continuations. Each
             pair starts with two actions *at the same state*, i.e. Q*'s ranking there. But summed log-prob
             methods (DPO, TDPO) only see the actions the two sides do not share: when the deviation leads back
             through s (a wall bump, or a step back along the route), the chosen action at s appears on both
             sides and cancels, so the pair says "this deviation (and its detour) is bad", never "the optimal
             action is good", and the detour's optimal actions at other route states are pushed down. Nothing
             is said about states off the optimal route other than the detours.
Metric: MSE over (states x 4 actions) between the trained pi_theta(a|s) and (a) the tabular pi*, (b) pi*_net,
the same MLP fit by cross-entropy to pi* until its table MSE is below 1e-4 (the paper's "optimal parameterized
policy"), each on all non-terminal states and on the optimal route's states. Mean and sample std over seeds.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alignlab.cache import write_text_atomically
from alignlab.errors import AlignlabError, ConfigError
from alignlab.losses.registry import PairStats, Params, SequenceStats, get_method

ACTIONS = ("LEFT", "DOWN", "RIGHT", "UP")
_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (d_row, d_col) per gymnasium action id
TIE_TOL = 1e-9
PAPER_MAP_4X4 = ("SFFF", "FHHF", "FHHG", "FFFF")
GYM_MAP_8X8 = ("SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF", "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG")
METHODS = ("sft", "ift", "dpo", "orpo", "simpo", "tdpo1", "tdpo2")
DESIGNS = ("routes", "branching")
BRANCH_RULES = ("worst", "nearest")
SCENARIOS = ("routes", "branching", "routes_large", "branching_large")


# ----------------------------------------------------------------------------------------------------------------
# Environment and exact optimum


@dataclass(frozen=True)
class FrozenLake:
    """A parsed, deterministic Frozen Lake map; `transitions[s, a]` is the next state (walls keep s)."""

    rows: tuple[str, ...]
    transitions: np.ndarray  # [nS, 4] int64
    start: int

    @property
    def nrow(self) -> int:
        return len(self.rows)

    @property
    def ncol(self) -> int:
        return len(self.rows[0])

    @property
    def num_states(self) -> int:
        return self.nrow * self.ncol

    def cell(self, s: int) -> str:
        return self.rows[s // self.ncol][s % self.ncol]

    @property
    def terminal(self) -> np.ndarray:
        """[nS] bool: holes and goals."""
        return np.array([self.cell(s) in "HG" for s in range(self.num_states)])

    @property
    def goal(self) -> np.ndarray:
        return np.array([self.cell(s) == "G" for s in range(self.num_states)])

    @property
    def hole(self) -> np.ndarray:
        return np.array([self.cell(s) == "H" for s in range(self.num_states)])

    def step(self, s: int, a: int) -> int:
        return int(self.transitions[s, a])


def parse_map(desc: str | Sequence[str], *, source: str = "map") -> FrozenLake:
    """Parse a map given as row strings, or one string with rows separated by newlines, ',' or '/'.

    Raises AlignlabError (one line naming `source`, the row and the problem) on unknown characters, ragged rows,
    or a start count other than one / no goal.
    """
    rows = [r for r in re.split(r"[\n,/]", desc)] if isinstance(desc, str) else list(desc)
    rows = [r.strip() for r in rows]
    rows = [r for r in rows if r]
    if not rows:
        raise AlignlabError(f"{source}: the map is empty; give rows of S/F/H/G, e.g. 'SFFF,FHHF,FHHG,FFFF'")
    for i, row in enumerate(rows, 1):
        bad = [c for c in row if c not in "SFHG"]
        if bad:
            col = row.index(bad[0]) + 1
            raise AlignlabError(f"{source}: row {i} column {col}: character {bad[0]!r} is not one of S, F, H, G")
        if len(row) != len(rows[0]):
            raise AlignlabError(f"{source}: row {i} has {len(row)} columns but row 1 has {len(rows[0])}; "
                                "the map must be rectangular")
    n_start = sum(r.count("S") for r in rows)
    if n_start != 1:
        raise AlignlabError(f"{source}: the map needs exactly one 'S', found {n_start}")
    if not any("G" in r for r in rows):
        raise AlignlabError(f"{source}: the map has no goal 'G'")
    nrow, ncol = len(rows), len(rows[0])
    trans = np.zeros((nrow * ncol, 4), dtype=np.int64)
    for r in range(nrow):
        for c in range(ncol):
            for a, (dr, dc) in enumerate(_MOVES):
                r2, c2 = min(max(r + dr, 0), nrow - 1), min(max(c + dc, 0), ncol - 1)
                trans[r * ncol + c, a] = r2 * ncol + c2
    start = next(r * ncol + row.index("S") for r, row in enumerate(rows) if "S" in row)
    return FrozenLake(tuple(rows), trans, start)


def value_iteration(lake: FrozenLake, gamma: float = 0.9, *, tol: float = 1e-13,
                    max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """V* [nS] and Q* [nS, 4] in float64: Q(s,a) = 1[s' goal] + gamma * V(s') * 1[s' non-terminal]; V = 0 on
    terminal states. Deterministic transitions, so it converges after (longest shortest path + 1) sweeps."""
    nxt = lake.transitions
    reward = lake.goal[nxt].astype(np.float64)
    cont = (~lake.terminal[nxt]).astype(np.float64)
    terminal = lake.terminal
    v = np.zeros(lake.num_states)
    for _ in range(max_iter):
        q = reward + gamma * cont * v[nxt]
        v_new = np.where(terminal, 0.0, q.max(1))
        done = np.abs(v_new - v).max() <= tol
        v = v_new
        if done:
            break
    q = reward + gamma * cont * v[nxt]
    q[terminal] = 0.0
    return v, q


def optimal_policy(lake: FrozenLake, q: np.ndarray, *, tol: float = TIE_TOL) -> np.ndarray:
    """pi* [nS, 4]: uniform over the actions with Q* >= max Q* - tol; terminal rows uniform (never scored)."""
    best = q >= q.max(1, keepdims=True) - tol
    pi = best / best.sum(1, keepdims=True)
    pi[lake.terminal] = 0.25
    return pi


def tie_states(lake: FrozenLake, pi_star: np.ndarray) -> list[int]:
    """Non-terminal states with more than one optimal action."""
    return [s for s in range(lake.num_states) if not lake.terminal[s] and (pi_star[s] > 0).sum() > 1]


# ----------------------------------------------------------------------------------------------------------------
# Trajectories and preference data


@dataclass(frozen=True)
class Trajectory:
    """States s_0..s_{n-1} and the actions a_t taken in them (the last action ends the episode or the data)."""

    states: tuple[int, ...]
    actions: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.actions)


def optimal_rollout(lake: FrozenLake, pi_star: np.ndarray, v: np.ndarray, start: int) -> Trajectory:
    """Follow pi* from `start` (lowest action id among ties) until a terminal state. Raises AlignlabError if no goal
    is reachable from `start` (V* = 0)."""
    if v[start] <= 0:
        r, c = divmod(start, lake.ncol)
        raise AlignlabError(f"map: no hole-free path from state {start} (row {r + 1}, column {c + 1}) to a goal")
    states, actions, s = [], [], start
    while not lake.terminal[s]:
        a = int(np.argmax(pi_star[s] > 0))
        states.append(s)
        actions.append(a)
        s = lake.step(s, a)
        if len(states) > lake.num_states:  # V* strictly increases along optimal actions, so this cannot happen
            raise RuntimeError("optimal rollout did not terminate")
    return Trajectory(tuple(states), tuple(actions))


def disjoint_route(lake: FrozenLake, route: Trajectory) -> Trajectory:
    """Shortest hole-free path from S to a goal sharing no state with `route` except S (BFS, neighbours visited in
    action order, wall bumps excluded). Raises AlignlabError when none exists."""
    blocked = set(route.states[1:])
    parent: dict[int, tuple[int, int]] = {}
    queue, seen = deque([lake.start]), {lake.start}
    while queue:
        s = queue.popleft()
        if lake.goal[s]:
            states, actions = [], []
            while s != lake.start:
                prev, a = parent[s]
                states.append(prev)
                actions.append(a)
                s = prev
            return Trajectory(tuple(reversed(states)), tuple(reversed(actions)))
        if lake.terminal[s]:
            continue
        for a in range(4):
            s2 = lake.step(s, a)
            if s2 in seen or s2 in blocked or lake.hole[s2]:
                continue
            seen.add(s2)
            parent[s2] = (s, a)
            queue.append(s2)
    raise AlignlabError("map: no hole-free route from S to a goal avoids the optimal route's states; the 'routes' "
                        "design needs one (use another map or the 'branching' design)")


def branching_pairs(lake: FrozenLake, route: Trajectory, q: np.ndarray, pi_star: np.ndarray,
                    v: np.ndarray, rule: str = "worst") -> list[tuple[Trajectory, Trajectory]]:
    """One (chosen, rejected) pair per route state s that has a sub-optimal action: chosen = the route's suffix
    from s; rejected = one sub-optimal action a at s, then optimal play from there (nothing more if a ends the
    episode or no goal is reachable). Among the sub-optimal actions that avoid holes and keep a goal reachable
    (else among all sub-optimal ones), `rule` 'worst' (default) takes the lowest Q* and
    'nearest' the highest (the nearest miss); ties go to the lowest action id."""
    if rule not in BRANCH_RULES:
        raise ConfigError(f"frozenlake option branch_rule = {rule!r} must be one of {', '.join(BRANCH_RULES)}")
    sign = -1.0 if rule == "nearest" else 1.0
    pairs = []
    for t, s in enumerate(route.states):
        chosen = Trajectory(route.states[t:], route.actions[t:])
        sub = [a for a in range(4) if q[s, a] < q[s].max() - TIE_TOL]
        if not sub:
            continue
        safe = [a for a in sub if not lake.terminal[lake.step(s, a)] and v[lake.step(s, a)] > 0]
        a_bad = min(safe or sub, key=lambda a: (sign * q[s, a], a))
        s1 = lake.step(s, a_bad)
        if lake.terminal[s1] or v[s1] <= 0:
            rejected = Trajectory((s,), (a_bad,))
        else:
            tail = optimal_rollout(lake, pi_star, v, s1)
            rejected = Trajectory((s,) + tail.states, (a_bad,) + tail.actions)
        pairs.append((chosen, rejected))
    return pairs


@dataclass(frozen=True)
class SequenceBatch:
    """Padded trajectories: states, actions [B, T] int64, mask [B, T] bool, lengths [B] float."""

    states: Tensor
    actions: Tensor
    mask: Tensor
    lengths: Tensor

    @staticmethod
    def from_trajectories(trajs: Sequence[Trajectory]) -> SequenceBatch:
        t_max = max(len(tr) for tr in trajs)
        states = torch.zeros(len(trajs), t_max, dtype=torch.long)
        actions = torch.zeros(len(trajs), t_max, dtype=torch.long)
        mask = torch.zeros(len(trajs), t_max, dtype=torch.bool)
        for i, tr in enumerate(trajs):
            n = len(tr)
            states[i, :n] = torch.tensor(tr.states)
            actions[i, :n] = torch.tensor(tr.actions)
            mask[i, :n] = True
        return SequenceBatch(states, actions, mask, mask.sum(-1).to(torch.float32))


@dataclass(frozen=True)
class PreferenceData:
    """What every method sees in one scenario: `targets` for SFT/IFT and (`chosen`, `rejected`) for pair methods."""

    route: Trajectory
    targets: list[Trajectory]
    chosen: list[Trajectory]
    rejected: list[Trajectory]


def build_data(lake: FrozenLake, design: str, q: np.ndarray, pi_star: np.ndarray, v: np.ndarray,
               branch_rule: str = "worst") -> PreferenceData:
    """The trajectories of a design ('routes' or 'branching') on `lake`; see the module docstring."""
    route = optimal_rollout(lake, pi_star, v, lake.start)
    if design == "routes":
        return PreferenceData(route, [route], [route], [disjoint_route(lake, route)])
    if design == "branching":
        pairs = branching_pairs(lake, route, q, pi_star, v, branch_rule)
        if not pairs:
            raise AlignlabError("map: no state on the optimal route has a sub-optimal action; 'branching' needs one")
        chosen = [c for c, _ in pairs]
        return PreferenceData(route, chosen, chosen, [r for _, r in pairs])
    raise ConfigError(f"design must be one of {DESIGNS}, got {design!r}")


# ----------------------------------------------------------------------------------------------------------------
# Policy network (a stacked ensemble of independent MLPs) and IFT's state mix


class PolicyEnsemble(torch.nn.Module):
    """R independent policies one-hot(nS) -> Linear(nS, H) -> ReLU -> Linear(H, 4), stored stacked.

    Parameters: w1 [R, nS, H], b1 [R, H], w2 [R, H, 4], b2 [R, 4] (weights stored input-major for batched matmul).
    """

    def __init__(self, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> None:
        super().__init__()
        self.w1, self.b1 = torch.nn.Parameter(w1.clone()), torch.nn.Parameter(b1.clone())
        self.w2, self.b2 = torch.nn.Parameter(w2.clone()), torch.nn.Parameter(b2.clone())

    @staticmethod
    def init_params(num_states: int, hidden: int, seeds: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """nn.Linear's default init (U(+-1/sqrt(fan_in)) for weights and biases), one generator per seed."""
        out: list[list[Tensor]] = [[], [], [], []]
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            k1, k2 = 1.0 / math.sqrt(num_states), 1.0 / math.sqrt(hidden)
            for i, (shape, k) in enumerate((((num_states, hidden), k1), ((hidden,), k1), ((hidden, 4), k2),
                                            ((4,), k2))):
                out[i].append((torch.rand(shape, generator=g) * 2 - 1) * k)
        return tuple(torch.stack(p) for p in out)  # type: ignore[return-value]

    def forward(self, x: Tensor, members: slice = slice(None)) -> Tensor:
        """Logits [R', N, 4] for inputs x [R', N, nS] of the members selected by `members`."""
        h = torch.relu(torch.bmm(x, self.w1[members]) + self.b1[members, None])
        return torch.bmm(h, self.w2[members]) + self.b2[members, None]

    def table(self) -> Tensor:
        """Logits for every one-hot state, [R, nS, 4] (a one-hot input selects a row of w1)."""
        return torch.bmm(torch.relu(self.w1 + self.b1[:, None]), self.w2) + self.b2[:, None]


def ift_state_inputs(states: Tensor, greedy_actions: Tensor, transitions: Tensor, lam: float,
                     num_states: int) -> Tensor:
    """IFT's temporal residual on state inputs: x~_t = (1 - lam) onehot(s_t) + lam onehot(s^_t).

    states [B, T] int64; greedy_actions [R, nS] int64 (argmax_a pi(a | s) of each of R policies, no gradient);
    transitions [nS, 4] int64. s^_0 = s_0 and s^_t = transitions[s_{t-1}, greedy[s_{t-1}]]: the guess at t is made
    from the true previous state (teacher-forced, one step ahead), like IFT's shifted token guess (arXiv 2405.11870, Sec. 4).
    Returns [R, B, T, nS] float32. Positions past a trajectory's end hold mixed garbage the loss mask drops.
    """
    prev = states[:, :-1]  # [B, T-1]
    guess_next = transitions[prev.unsqueeze(0), greedy_actions[:, prev]]  # [R, B, T-1]
    first = states[:, :1].unsqueeze(0).expand(greedy_actions.shape[0], -1, -1)
    guessed = torch.cat([first, guess_next], dim=-1)  # [R, B, T]
    true = F.one_hot(states, num_states).to(torch.float32).unsqueeze(0)
    return (1.0 - lam) * true + lam * F.one_hot(guessed, num_states).to(torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class FrozenLakeConfig:
    """Hyper-parameters shared by every method and scenario (betas from the papers; nothing tuned per method)."""

    steps: int = 500
    lr: float = 1e-2  # Adam, default betas, full batch
    hidden: int = 64
    env_gamma: float = 0.9
    dpo_beta: float = 0.1
    tdpo_beta: float = 0.1
    tdpo_alpha: float = 0.5  # TDPO2 only
    simpo_beta: float = 2.0
    simpo_gamma: float = 0.5  # absolute margin; gamma / beta = 0.25 (SimPOConfig default)
    orpo_lam: float = 0.25  # the IFT paper's ORPO value
    ift_lambda: float = 0.2
    ift_gamma: float = 0.95
    sft_normalization: str = "seq_mean"
    net_fit_tol: float = 1e-4  # pi*_net is fit until its table MSE to pi* is below this
    exclude_ties: bool = False  # drop states with tied optimal actions from the metric
    branch_rule: str = "worst"  # which sub-optimal action starts a 'branching' rejected continuation

    def validate(self) -> FrozenLakeConfig:
        checks = [
            ("steps", self.steps >= 1, "an integer >= 1"), ("lr", self.lr > 0, "> 0"),
            ("hidden", self.hidden >= 1, "an integer >= 1"), ("env_gamma", 0 < self.env_gamma < 1, "in (0, 1)"),
            ("dpo_beta", self.dpo_beta > 0, "> 0"), ("tdpo_beta", self.tdpo_beta > 0, "> 0"),
            ("tdpo_alpha", self.tdpo_alpha >= 0, ">= 0"), ("simpo_beta", self.simpo_beta > 0, "> 0"),
            ("orpo_lam", self.orpo_lam >= 0, ">= 0"), ("ift_lambda", 0 <= self.ift_lambda <= 1, "in [0, 1]"),
            ("ift_gamma", 0 <= self.ift_gamma < 1, "in [0, 1)"), ("net_fit_tol", self.net_fit_tol > 0, "> 0"),
            ("branch_rule", self.branch_rule in BRANCH_RULES, "one of " + ", ".join(BRANCH_RULES)),
            ("sft_normalization", self.sft_normalization in ("sum", "seq_mean", "token_mean"),
             "one of sum, seq_mean, token_mean"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"frozenlake option {name} = {getattr(self, name)!r} must be {what}")
        return self


def _token_logps(logp_table: Tensor, batch: SequenceBatch) -> Tensor:
    """log pi(a_t | s_t) [R, B, T] (0 on padding) from a log-prob table [R, nS, 4]."""
    return logp_table[:, batch.states, batch.actions] * batch.mask


def _seq_sum(per_state: Tensor, batch: SequenceBatch) -> Tensor:
    """Sum over each trajectory's states of a per-state quantity [R, nS] -> [R, B]."""
    return (per_state[:, batch.states] * batch.mask).sum(-1)


# The testbed's options for each method's registry hyper-parameters (testbed option names predate the registry).
_PARAM_OPTIONS: dict[str, dict[str, str]] = {
    "sft": {"sft_normalization": "sft_normalization"},
    "ift": {"ift_lambda": "ift_lambda", "ift_gamma": "ift_gamma"},
    "dpo": {"beta": "dpo_beta"},
    "tdpo1": {"beta": "tdpo_beta"},
    "tdpo2": {"beta": "tdpo_beta", "tdpo_alpha": "tdpo_alpha"},
    "simpo": {"beta": "simpo_beta", "simpo_gamma": "simpo_gamma"},
    "orpo": {"orpo_lambda": "orpo_lam"},
}


def method_params(method: str, cfg: FrozenLakeConfig) -> Params:
    """The registry hyper-parameters of `method` with this testbed's values."""
    return get_method(method).make_params({key: getattr(cfg, option)
                                           for key, option in _PARAM_OPTIONS[method].items()})


def _method_losses(method: str, model: PolicyEnsemble, members: slice, logp: Tensor, st: dict[str, Tensor],
                   data: dict[str, SequenceBatch], transitions: Tensor, cfg: FrozenLakeConfig) -> Tensor:
    """Per-member loss [S] (mean over the member's sequences or pairs) of `method` for the members in `members`,
    through the method's registry record (the same loss as the trainer's).

    logp [S, nS, 4] is the members' log-prob table; `st` holds this step's statistics of all members, sliced here:
    'targets', 'chosen', 'rejected' (sums of log pi over each trajectory, [R, B]), 'kl_chosen', 'kl_rejected'
    (sums of KL(pi_ref || pi_theta) over its states, [R, B]) and the constant 'ref_chosen', 'ref_rejected' [S, B].
    """
    record, params = get_method(method), method_params(method, cfg)
    n = logp.shape[0]
    if not record.paired:
        tgt = data["targets"]
        b, t = tgt.states.shape
        if record.mixes_inputs:  # IFT: the temporal residual on the state inputs
            with torch.no_grad():
                greedy = logp.argmax(-1)  # [S, nS]; argmax of logits = argmax of log-probs
            x = ift_state_inputs(tgt.states, greedy, transitions, params.ift_lambda, logp.shape[1])
            logits = model(x.reshape(n, b * t, -1), members).view(n, b, t, 4)
            tok = torch.log_softmax(logits, -1).gather(-1, tgt.actions.expand(n, -1, -1).unsqueeze(-1)).squeeze(-1)
            tok = (tok * tgt.mask).reshape(n * b, t)
            stats = SequenceStats(tok.sum(-1), tgt.lengths.repeat(n), tok, tgt.mask.repeat(n, 1))
        else:
            stats = SequenceStats(st["targets"][members].reshape(-1), tgt.lengths.repeat(n))
        losses = record.loss(stats, params).losses.view(n, b)
        if record.token_normalised(params):  # summed NLL over the member's response tokens
            return losses.sum(-1) / tgt.lengths.sum().clamp(min=1)
        return losses.mean(-1)
    kl = ((st["kl_chosen"][members].reshape(-1), st["kl_rejected"][members].reshape(-1))
          if record.needs_token_kl else (None, None))
    stats = PairStats(st["chosen"][members].reshape(-1), st["rejected"][members].reshape(-1),
                      data["chosen"].lengths.repeat(n), data["rejected"].lengths.repeat(n),
                      st["ref_chosen"].reshape(-1), st["ref_rejected"].reshape(-1), *kl)
    return record.loss(stats, params).losses.view(n, -1).mean(-1)


def train_methods(lake: FrozenLake, data: PreferenceData, methods: Sequence[str], seeds: Sequence[int],
                  cfg: FrozenLakeConfig) -> tuple[Tensor, Tensor]:
    """Train every method from each seed's pi_0 with Adam; returns (final policies [M, S, nS, 4] float64,
    per-step losses [steps, M, S])."""
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    n_s, n_m = len(seeds), len(methods)
    init = PolicyEnsemble.init_params(lake.num_states, cfg.hidden, seeds)
    with torch.no_grad():
        ref_logp = torch.log_softmax(PolicyEnsemble(*init).table(), -1)  # pi_ref = pi_0, [S, nS, 4]
    model = PolicyEnsemble(*(p.repeat(n_m, *([1] * (p.dim() - 1))) for p in init))  # member r = m * S + seed
    ref_all = ref_logp.repeat(n_m, 1, 1)  # [R, nS, 4], member-aligned
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = {"targets": SequenceBatch.from_trajectories(data.targets),
               "chosen": SequenceBatch.from_trajectories(data.chosen),
               "rejected": SequenceBatch.from_trajectories(data.rejected)}
    const = {"ref_chosen": _token_logps(ref_logp, batches["chosen"]).sum(-1),
             "ref_rejected": _token_logps(ref_logp, batches["rejected"]).sum(-1)}
    need_kl = any(get_method(m).needs_token_kl for m in methods)
    transitions = torch.from_numpy(lake.transitions)
    curves = torch.zeros(cfg.steps, n_m, n_s)
    for step in range(cfg.steps):
        logp = torch.log_softmax(model.table(), -1)  # [R, nS, 4]
        st = dict(const)
        for key in ("targets", "chosen", "rejected"):
            st[key] = _token_logps(logp, batches[key]).sum(-1)  # [R, B]
        if need_kl:
            kl = (ref_all.exp() * (ref_all - logp)).sum(-1)  # [R, nS], exact KL(pi_ref || pi_theta) per state
            st["kl_chosen"], st["kl_rejected"] = _seq_sum(kl, batches["chosen"]), _seq_sum(kl, batches["rejected"])
        losses = torch.stack([
            _method_losses(m, model, slice(i * n_s, (i + 1) * n_s), logp[i * n_s:(i + 1) * n_s], st, batches,
                           transitions, cfg)
            for i, m in enumerate(methods)
        ])  # [M, S]
        opt.zero_grad(set_to_none=True)
        # Members share no parameters, so the sum's gradient on each member is that member's own loss gradient.
        losses.sum().backward()
        opt.step()
        curves[step] = losses.detach()
    with torch.no_grad():
        final = torch.softmax(model.table().double(), -1).view(n_m, n_s, lake.num_states, 4)
    return final, curves


def fit_optimal_net(lake: FrozenLake, pi_star: np.ndarray, cfg: FrozenLakeConfig, seed: int,
                    max_steps: int = 20_000) -> tuple[np.ndarray, int]:
    """pi*_net: the policy MLP fit by cross-entropy to pi* on all non-terminal states until its table MSE is below
    cfg.net_fit_tol. Returns (its table [nS, 4] float64, steps used)."""
    model = PolicyEnsemble(*PolicyEnsemble.init_params(lake.num_states, cfg.hidden, [seed]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    states = torch.from_numpy(np.flatnonzero(~lake.terminal))
    target = torch.from_numpy(pi_star).float()[states]
    for step in range(1, max_steps + 1):
        logp = torch.log_softmax(model.table()[0, states], -1)
        with torch.no_grad():
            mse = float(((logp.exp() - target) ** 2).mean())
        if mse < cfg.net_fit_tol:
            break
        loss = -(target * logp).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    else:
        raise RuntimeError(f"pi*_net did not reach table MSE {cfg.net_fit_tol} in {max_steps} steps (last {mse:.2e})")
    with torch.no_grad():
        return torch.softmax(model.table()[0].double(), -1).numpy(), step - 1


# ----------------------------------------------------------------------------------------------------------------
# Scenarios, metric, reporting


def _stats(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "per_seed": [float(x) for x in arr]}


def policy_mse(pi: np.ndarray, target: np.ndarray, states: Sequence[int]) -> np.ndarray:
    """Mean over (states x 4 actions) of (pi - target)^2; pi [..., nS, 4], target [nS, 4] -> [...]."""
    idx = list(states)
    return ((pi[..., idx, :] - target[idx]) ** 2).mean(axis=(-1, -2))


def run_scenario(name: str, lake: FrozenLake, design: str, methods: Sequence[str], seeds: Sequence[int],
                 cfg: FrozenLakeConfig) -> dict:
    """Build the design's data on `lake`, train every method from each seed and score it; a JSON-ready dict."""
    v, q = value_iteration(lake, cfg.env_gamma)
    pi_star = optimal_policy(lake, q)
    data = build_data(lake, design, q, pi_star, v, cfg.branch_rule)
    ties = tie_states(lake, pi_star)
    skip = set(ties) if cfg.exclude_ties else set()
    all_states = [s for s in range(lake.num_states) if not lake.terminal[s] and s not in skip]
    route_states = [s for s in dict.fromkeys(data.route.states) if s not in skip]
    if not all_states or not route_states:
        raise ConfigError(f"scenario {name}: excluding tied states leaves no state to score")
    pi_net, net_steps = fit_optimal_net(lake, pi_star, cfg, seed=seeds[0])
    final, curves = train_methods(lake, data, methods, seeds, cfg)
    final_np = final.numpy()
    out_methods = {}
    for i, m in enumerate(methods):
        out_methods[m] = {
            "mse_all": _stats(policy_mse(final_np[i], pi_star, all_states)),
            "mse_route": _stats(policy_mse(final_np[i], pi_star, route_states)),
            "mse_all_net": _stats(policy_mse(final_np[i], pi_net, all_states)),
            "mse_route_net": _stats(policy_mse(final_np[i], pi_net, route_states)),
            "loss_first": [float(x) for x in curves[0, i]],
            "loss_last": [float(x) for x in curves[-1, i]],
        }

    def traj(tr: Trajectory) -> dict:
        return {"states": list(tr.states), "actions": list(tr.actions)}

    init_pi = torch.softmax(PolicyEnsemble(*PolicyEnsemble.init_params(lake.num_states, cfg.hidden, seeds))
                            .table().double(), -1).detach().numpy()
    return {
        "design": design,
        "map": list(lake.rows),
        "seeds": list(seeds),
        "optimal_route": traj(data.route),
        "targets": [traj(t) for t in data.targets],
        "pairs": [{"chosen": traj(c), "rejected": traj(r)} for c, r in zip(data.chosen, data.rejected)],
        "scored_states_all": all_states,
        "scored_states_route": route_states,
        "tie_states": ties,
        "v_star": [float(x) for x in v],
        "pi_star": pi_star.tolist(),
        "pi_star_net_mse": float(policy_mse(pi_net, pi_star, [s for s in range(lake.num_states)
                                                              if not lake.terminal[s]])),
        "pi_star_net_steps": net_steps,
        "init_mse_all": _stats(policy_mse(init_pi, pi_star, all_states)),
        "init_mse_route": _stats(policy_mse(init_pi, pi_star, route_states)),
        "methods": out_methods,
    }


def _scenario_lake(name: str, small: FrozenLake, large: FrozenLake) -> tuple[FrozenLake, str]:
    design, _, size = name.partition("_")
    return (large if size == "large" else small), design


def _parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    if value is None:
        return list(allowed)
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    for v in items:
        if v not in allowed:
            raise ConfigError(f"frozenlake {what} {v!r} is unknown; choose from {', '.join(allowed)}")
    if not items:
        raise ConfigError(f"frozenlake: no {what} given; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def plot_scenario(path: str | Path, name: str, result: dict) -> Path:
    """Grouped bar chart of the MSE to the tabular pi* per method (all non-terminal / optimal-route states)."""
    from alignlab.testbeds.plots import grouped_bar_chart

    methods = list(result["methods"])
    n_seeds = len(result["seeds"])
    series = {}
    for key, label in (("mse_all", "all non-terminal states"), ("mse_route", "optimal-route states")):
        series[label] = ([result["methods"][m][key]["mean"] for m in methods],
                         [result["methods"][m][key]["std"] for m in methods],
                         [result["methods"][m][key]["per_seed"] for m in methods])
    rows = "/".join(result["map"])
    return grouped_bar_chart(
        path, [m.upper() for m in methods], series,
        title=f"Frozen Lake '{name}' ({len(result['map'])}x{len(result['map'][0])}: {rows})"
        if len(rows) <= 40 else f"Frozen Lake '{name}' ({len(result['map'])}x{len(result['map'][0])} map)",
        ylabel=f"MSE to optimal π(a|s)  (mean ± std, {n_seeds} seeds)", xlabel="method")


def run_frozenlake(scenarios: str | Sequence[str] | None = None, seeds: int = 5, out_dir: str | Path = "frozenlake",
                   steps: int | None = None, lr: float | None = None, hidden: int | None = None, *,
                   methods: str | Sequence[str] | None = None, base_seed: int = 0,
                   small_map: str | Sequence[str] = PAPER_MAP_4X4, large_map: str | Sequence[str] = GYM_MAP_8X8,
                   config: FrozenLakeConfig | None = None, num_threads: int | None = 1, plot: bool = True) -> dict:
    """Run the comparison and write `frozenlake.json` (and `frozenlake_<scenario>.png` when `plot`) to out_dir.

    scenarios: names from SCENARIOS (a list or comma-separated string; None = all). seeds: how many seeds,
    base_seed .. base_seed + seeds - 1. steps / lr / hidden override `config` when given. num_threads sets
    torch's intra-op threads for the run (restored after; None leaves it). Returns the dict written to JSON:
    {"config", "methods", "runtime_s", "scenarios": {name: run_scenario(...)}, "files"}.
    """
    cfg = config or FrozenLakeConfig()
    overrides = {k: v for k, v in (("steps", steps), ("lr", lr), ("hidden", hidden)) if v is not None}
    cfg = replace(cfg, **overrides).validate()
    if int(seeds) < 1:
        raise ConfigError(f"frozenlake option seeds = {seeds} must be an integer >= 1")
    if num_threads is not None and num_threads < 1:
        raise ConfigError(f"frozenlake option num_threads = {num_threads} must be >= 1")
    names = _parse_list(scenarios, SCENARIOS, "scenario")
    method_names = _parse_list(methods, METHODS, "method")
    seed_list = list(range(int(base_seed), int(base_seed) + int(seeds)))
    small = parse_map(small_map, source="small map")
    large = parse_map(large_map, source="large map")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    t0 = time.perf_counter()
    try:
        results = {}
        for name in names:
            lake, design = _scenario_lake(name, small, large)
            results[name] = run_scenario(name, lake, design, method_names, seed_list, cfg)
    finally:
        torch.set_num_threads(old_threads)
    runtime = time.perf_counter() - t0
    report = {"config": asdict(cfg) | {"optimizer": "Adam", "seeds": seed_list, "tie_tol": TIE_TOL},
              "methods": method_names, "runtime_s": runtime, "scenarios": results, "files": []}
    if plot:
        for name, res in results.items():
            report["files"].append(str(plot_scenario(out / f"frozenlake_{name}.png", name, res)))
    json_path = out / "frozenlake.json"
    report["files"].insert(0, str(json_path))
    write_text_atomically(json_path, json.dumps(report, indent=1))
    return report


def format_tables(results: dict) -> str:
    """Markdown tables (one per scenario) of MSE mean ± std per method, plus the method order by MSE."""
    lines = []
    n_seeds = len(results["config"]["seeds"])
    for name, res in results["scenarios"].items():
        rows = "/".join(res["map"])
        lines.append(f"### {name}: design '{res['design']}', {len(res['map'])}x{len(res['map'][0])} map "
                     f"{rows if len(rows) <= 40 else ''}".rstrip())
        lines.append("")
        lines.append(f"{n_seeds} seeds; pi_0 MSE all {res['init_mse_all']['mean']:.4f}, route "
                     f"{res['init_mse_route']['mean']:.4f}; {len(res['pairs'])} pair(s), "
                     f"{len(res['targets'])} target trajectory(ies); tie states {res['tie_states']}")
        lines.append("")
        lines.append("| method | MSE all (pi*) | MSE route (pi*) | MSE all (pi*_net) | MSE route (pi*_net) "
                     "| loss first -> last |")
        lines.append("|---|---|---|---|---|---|")
        for m, r in res["methods"].items():
            cells = [f"{r[k]['mean']:.4f} ± {r[k]['std']:.4f}" for k in ("mse_all", "mse_route", "mse_all_net",
                                                                          "mse_route_net")]
            lf, ll = float(np.mean(r["loss_first"])), float(np.mean(r["loss_last"]))
            lines.append(f"| {m.upper()} | " + " | ".join(cells) + f" | {lf:.3f} -> {ll:.3f} |")
        for key, label in (("mse_all", "all states"), ("mse_route", "route states")):
            order = sorted(res["methods"], key=lambda m: res["methods"][m][key]["mean"])
            lines.append("")
            lines.append(f"Order by MSE ({label}, lower is better): " + " < ".join(m.upper() for m in order))
        lines.append("")
    lines.append(f"Runtime: {results['runtime_s']:.1f} s")
    return "\n".join(lines)


__all__ = [
    "ACTIONS", "BRANCH_RULES", "DESIGNS", "GYM_MAP_8X8", "METHODS", "PAPER_MAP_4X4", "SCENARIOS", "TIE_TOL", "FrozenLake",
    "FrozenLakeConfig", "PolicyEnsemble", "PreferenceData", "SequenceBatch", "Trajectory", "branching_pairs",
    "build_data", "disjoint_route", "fit_optimal_net", "format_tables", "ift_state_inputs",
    "optimal_policy", "optimal_rollout", "parse_map", "plot_scenario", "policy_mse", "run_frozenlake",
    "run_scenario", "tie_states", "train_methods", "value_iteration",
]
