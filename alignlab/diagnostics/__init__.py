"""Ranking diagnostics (Chen et al. 2024, arXiv 2405.19534): ranking accuracy, idealized ranking accuracy and the
alignment gap, the flip threshold of Theorem 4.1, flip groups, rater proportions from votes, multi-output and tie
variants, parameter distance, and win rate under a plug-in judge.

These are pure functions over per-pair statistics ([B] summed response log-probs and token counts); producing
those statistics from models is the scoring engine's job.
"""

from alignlab.diagnostics.distance import WeightDistance, weight_distance
from alignlab.diagnostics.flips import GROUPS, FlipGroups, flip_groups
from alignlab.diagnostics.multi import (
    competition_ranks,
    multi_output_ranking_accuracy,
    multi_output_ranking_correct,
)
from alignlab.diagnostics.ranking import (
    BETA_GRID,
    AlignmentGap,
    GapSummary,
    alignment_gap,
    flip_threshold,
    idealized_ranking_accuracy,
    idealized_ranking_correct,
    ranking_accuracy,
    ranking_correct,
)
from alignlab.diagnostics.ties import SCORE_SPACES, ranking_accuracy_with_ties
from alignlab.diagnostics.votes import (
    ALPHA_FIELDS,
    VoteSummary,
    alpha_from_counts,
    alpha_from_votes,
    alphas_from_records,
    find_alpha_source,
    group_votes,
    require_alpha_source,
)
from alignlab.diagnostics.winrate import RewardModelJudge, WinRate, win_rate

__all__ = [
    "ALPHA_FIELDS",
    "BETA_GRID",
    "GROUPS",
    "SCORE_SPACES",
    "AlignmentGap",
    "FlipGroups",
    "GapSummary",
    "RewardModelJudge",
    "VoteSummary",
    "WeightDistance",
    "WinRate",
    "alignment_gap",
    "alpha_from_counts",
    "alpha_from_votes",
    "alphas_from_records",
    "competition_ranks",
    "find_alpha_source",
    "flip_groups",
    "flip_threshold",
    "group_votes",
    "idealized_ranking_accuracy",
    "idealized_ranking_correct",
    "multi_output_ranking_accuracy",
    "multi_output_ranking_correct",
    "ranking_accuracy",
    "ranking_accuracy_with_ties",
    "ranking_correct",
    "require_alpha_source",
    "weight_distance",
    "win_rate",
]
