"""Online preference training: every round, sample from the current policy, judge, pair and train (rounds.py).

`run_online(config)` runs the `online` section of a training config; `alignlab train` calls it when the config
sets `rounds`. `build_pairs` / `pair_indices` (pairs.py) turn judged samples into preference pairs.
"""

from alignlab.online.pairs import PAIR_RULES, build_pairs, pair_indices
from alignlab.online.rounds import OnlineResult, round_config, round_dir, run_online

__all__ = ["PAIR_RULES", "OnlineResult", "build_pairs", "pair_indices", "round_config", "round_dir", "run_online"]
