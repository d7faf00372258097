"""TDPO controlled-sentiment testbed (Zeng et al. 2024, arXiv 2404.11999, Sec. 5, Fig. 3), offline by default.

  corpus.py    synthetic film reviews with controllable polarity (IMDb's text/label layout) and review prefixes
  models.py    the tiny policy (GPT-2 from config, BPE trained on the reviews) and sentiment classifier
               (RoBERTa from config), loaded through the same code as gpt2-large / siebert's classifier
  pipeline.py  SFT -> sampled, classifier-labelled pairs -> DPO/TDPO1/TDPO2/f-DPO/SimPO sweep -> evaluation
  frontier.py  Pareto frontiers, frontier comparison, the reward-vs-KL and SeqKL plots
  report.py    the terminal summary of a sweep (format_table); `alignlab testbed sentiment` is alignlab.cli.testbed
  ranking_winrate.py  ranking accuracy and win rate vs distance from the reference over DPO checkpoints
               (arXiv 2405.19534, Sec. 5, Fig. 4) on the pipeline's reference, classifier and pairs
  tdpo_table.py  alignment accuracy and entropy of f-DPO, DPO, TDPO1, TDPO2 over seeds (arXiv 2404.11999,
               Table 1) on the same stages and held-out pairs
"""

from alignlab.testbeds.sentiment.pipeline import SentimentConfig, run_sweep
from alignlab.testbeds.sentiment.report import format_table

__all__ = ["SentimentConfig", "format_table", "run_sweep"]
