"""Ranking diagnostics (Chen et al. 2024, arXiv 2405.19534): ranking accuracy, idealized ranking accuracy and the
alignment gap, the flip threshold of Theorem 4.1, flip groups, rater proportions from votes, multi-output and tie
variants, parameter distance, and win rate under any judge of alignlab.judges.

These are pure functions over per-pair statistics ([B] summed response log-probs and token counts); the scoring
engine (scoring.py) produces those statistics from models and caches them, plots.py draws Figures 2 and 3,
callbacks.FlipTracker logs the flip groups during training, diagnose.py is `alignlab diagnose`, token_views.py the
per-token views of `alignlab inspect` and report.py the one-page run report of `alignlab report`.
"""

from alignlab.diagnostics.callbacks import FLIP_KEYS, FlipTracker
from alignlab.diagnostics.distance import WeightDistance, weight_distance
from alignlab.diagnostics.diversity import (
    distinct_n,
    diversity_metrics,
    mean_token_entropy,
    ngram_counts,
    ngram_entropy,
)
from alignlab.diagnostics.flips import GROUPS, FlipGroups, flip_groups
from alignlab.diagnostics.generation import generate, load_prompts, score_completions
from alignlab.diagnostics.multi import (
    competition_ranks,
    multi_output_ranking_accuracy,
    multi_output_ranking_correct,
)
from alignlab.diagnostics.plots import plot_flip_groups, plot_loss_vs_ref_logratio
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
from alignlab.diagnostics.report import ReportOptions, ReportResult, build_report
from alignlab.diagnostics.scoring import (
    PairScores,
    compute_pair_scores,
    data_fingerprint,
    model_fingerprint,
    score_model,
)
from alignlab.diagnostics.sequence_scores import score_data, score_examples, score_tokens
from alignlab.diagnostics.ties import SCORE_SPACES, ranking_accuracy_with_ties
from alignlab.diagnostics.token_views import (
    PairTokens,
    SequenceTokens,
    inspect_pair,
    pair_token_views,
    top_tokens,
)
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
from alignlab.diagnostics.winrate import WinRate, win_rate

__all__ = [
    "ALPHA_FIELDS",
    "BETA_GRID",
    "FLIP_KEYS",
    "GROUPS",
    "SCORE_SPACES",
    "AlignmentGap",
    "FlipGroups",
    "FlipTracker",
    "GapSummary",
    "PairScores",
    "PairTokens",
    "ReportOptions",
    "ReportResult",
    "SequenceTokens",
    "VoteSummary",
    "WeightDistance",
    "WinRate",
    "alignment_gap",
    "alpha_from_counts",
    "alpha_from_votes",
    "alphas_from_records",
    "build_report",
    "competition_ranks",
    "compute_pair_scores",
    "data_fingerprint",
    "distinct_n",
    "diversity_metrics",
    "find_alpha_source",
    "flip_groups",
    "flip_threshold",
    "generate",
    "group_votes",
    "idealized_ranking_accuracy",
    "idealized_ranking_correct",
    "inspect_pair",
    "load_prompts",
    "mean_token_entropy",
    "model_fingerprint",
    "multi_output_ranking_accuracy",
    "multi_output_ranking_correct",
    "ngram_counts",
    "ngram_entropy",
    "pair_token_views",
    "plot_flip_groups",
    "plot_loss_vs_ref_logratio",
    "ranking_accuracy",
    "ranking_accuracy_with_ties",
    "ranking_correct",
    "require_alpha_source",
    "score_completions",
    "score_data",
    "score_examples",
    "score_model",
    "score_tokens",
    "top_tokens",
    "weight_distance",
    "win_rate",
]
