"""A synthetic corpus of short film reviews with controllable polarity (the offline stand-in for IMDb).

A review is a few sentences drawn from a small grammar: optional neutral openers and facts (plot, setting,
running time, viewing circumstances) and 2-4 *evaluative* sentences, each positive or negative. Each evaluative
sentence is positive with probability `positivity` (the control knob), independently; its words come from the
positive or the negative vocabulary (adjectives, verbs, verdicts, ratings) and from shared neutral vocabulary
(aspects, intensifiers, film nouns). Neutral sentences carry no polarity word.

Label (ground truth, computed from the content): 1 (positive) if the review has more positive than negative
evaluative sentences, 0 (negative) if fewer, -1 (no majority) on a tie. This follows IMDb's columns `text` /
`label` (IMDb marks its unlabelled split with -1 too), so the synthetic splits and `--dataset imdb` load through
the same code. The corpus draws `positivity` per review from a mixture (40% near 0.85, 40% near 0.15, 20% at
0.5), so about 45% of reviews are positive, 45% negative and 10% without a majority.

Everything is a pure function of the seed (a `random.Random` per split), so the same seed gives the same text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignlab.cache import write_jsonl_atomically
from alignlab.errors import AlignlabError, DataError

POSITIVE, NEGATIVE, NO_MAJORITY = 1, 0, -1

FILM_NOUNS = ("film", "movie", "picture", "story", "feature")
ASPECTS = ("acting", "plot", "script", "soundtrack", "camera work", "dialogue", "ending", "pacing", "cast",
           "direction", "story", "humour", "score", "editing", "lead performance", "first half", "finale",
           "set design", "costumes", "visual effects")
ROLES = ("lead actor", "lead actress", "villain", "supporting cast", "young star", "director")
INTENSIFIERS = ("", "", "really ", "truly ", "quite ", "very ", "absolutely ", "simply ", "rather ")

POSITIVE_ADJECTIVES = ("brilliant", "wonderful", "superb", "moving", "delightful", "gripping", "charming",
                       "excellent", "beautiful", "clever", "stunning", "hilarious", "touching", "memorable",
                       "fantastic", "powerful", "flawless", "engaging", "great", "lovely", "fresh", "inspiring")
NEGATIVE_ADJECTIVES = ("terrible", "awful", "boring", "dull", "clumsy", "painful", "predictable", "weak",
                       "bland", "messy", "forgettable", "ridiculous", "tedious", "lifeless", "horrible", "lazy",
                       "annoying", "disappointing", "bad", "poor", "stale", "pointless")
POSITIVE_VERBS = ("loved", "adored", "enjoyed", "admired", "treasured", "savoured")
NEGATIVE_VERBS = ("hated", "disliked", "regretted", "resented", "despised", "endured")
POSITIVE_VERDICTS = ("Highly recommended.", "A must see.", "I would watch it again tomorrow.",
                     "Worth every minute.", "One of the best films of the year.", "Go and see it.",
                     "I left the cinema smiling.", "A true gem.")
NEGATIVE_VERDICTS = ("Avoid this one.", "A complete waste of time.", "I walked out halfway.",
                     "I want my money back.", "One of the worst films of the year.", "Skip it.",
                     "I left the cinema angry.", "A total mess.")
POSITIVE_RATINGS = ("7", "8", "9", "10")
NEGATIVE_RATINGS = ("1", "2", "3", "4")

PLACES = ("Paris", "a small town", "New York", "the desert", "a space station", "Tokyo", "a farm", "the sea",
          "London", "a prison", "the mountains", "an old hotel")
PEOPLE = ("a detective", "a nurse", "a young teacher", "an old sailor", "a lonely robot", "a chef",
          "a family", "a boxer", "a journalist", "a student", "a pilot", "a musician")
ACTIONS = ("searches for a lost letter", "tries to save a business", "returns home after years away",
           "plans a robbery", "falls in love", "solves a murder", "trains for a final match",
           "hides a secret", "crosses the country", "starts a band", "fights a storm", "writes a novel")
COMPANIONS = ("my brother", "a friend", "my parents", "my wife", "my husband", "the kids", "a colleague",
              "nobody")
WHEN = ("last weekend", "on a rainy night", "yesterday", "on a long flight", "at a festival", "on television",
        "in an empty cinema", "last month")

OPENERS = (
    "I watched this {film} {when} with {who}.",
    "I saw this {film} {when}.",
    "This {film} is about {person} who {action}.",
    "The {film} follows {person} who {action}.",
    "So I finally watched this {film}.",
    "My review of this {film}.",
    "Here are my thoughts on this {film}.",
)
FACTS = (
    "It is set in {place}.",
    "It runs for about {minutes} minutes.",
    "The story follows {person} who {action}.",
    "Most of it takes place in {place}.",
    "It was released in {year}.",
    "I went in knowing nothing about it.",
    "The {aspect} reminded me of older films.",
    "It is based on a novel.",
)
EVALUATIVE = (
    "The {aspect} is {intens}{adj}.",
    "The {aspect} was {intens}{adj}, and the {aspect2} was {adj2}.",
    "I {verb} the {aspect}.",
    "What a {adj} {film}!",
    "It is {intens}{adj} from start to finish.",
    "The {role} gives a {adj} performance.",
    "Overall, a {intens}{adj} {film}.",
    "{verdict}",
    "{rating} out of 10.",
)


def _articles(sentence: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", sentence)


def _evaluative_sentence(rng: random.Random, positive: bool) -> str:
    adjectives = POSITIVE_ADJECTIVES if positive else NEGATIVE_ADJECTIVES
    aspect, aspect2 = rng.sample(ASPECTS, 2)
    return _articles(rng.choice(EVALUATIVE).format(
        aspect=aspect, aspect2=aspect2, intens=rng.choice(INTENSIFIERS), adj=rng.choice(adjectives),
        adj2=rng.choice(adjectives), verb=rng.choice(POSITIVE_VERBS if positive else NEGATIVE_VERBS),
        film=rng.choice(FILM_NOUNS), role=rng.choice(ROLES),
        verdict=rng.choice(POSITIVE_VERDICTS if positive else NEGATIVE_VERDICTS),
        rating=rng.choice(POSITIVE_RATINGS if positive else NEGATIVE_RATINGS)))


def _neutral_sentence(rng: random.Random, templates: Sequence[str]) -> str:
    return rng.choice(templates).format(
        film=rng.choice(FILM_NOUNS), when=rng.choice(WHEN), who=rng.choice(COMPANIONS), person=rng.choice(PEOPLE),
        action=rng.choice(ACTIONS), place=rng.choice(PLACES), minutes=rng.choice(("90", "100", "120", "150")),
        year=rng.choice(("1987", "1994", "2003", "2011", "2019")), aspect=rng.choice(ASPECTS))


def make_review(rng: random.Random, positivity: float) -> dict[str, Any]:
    """One review: {"text", "label", "n_positive", "n_negative", "positivity"}.

    Each of the 2-4 evaluative sentences is positive with probability `positivity` (in [0, 1]); the label is
    the majority (1 / 0) or -1 on a tie (module docstring).
    """
    if not 0.0 <= positivity <= 1.0:
        raise AlignlabError(f"positivity must be in [0, 1], got {positivity}")
    sentences: list[str] = []
    if rng.random() < 0.8:
        sentences.append(_neutral_sentence(rng, OPENERS))
    n_positive = n_negative = 0
    for _ in range(rng.randint(2, 4)):
        positive = rng.random() < positivity
        n_positive += positive
        n_negative += not positive
        sentences.append(_evaluative_sentence(rng, positive))
        if rng.random() < 0.25:
            sentences.append(_neutral_sentence(rng, FACTS))
    label = POSITIVE if n_positive > n_negative else NEGATIVE if n_negative > n_positive else NO_MAJORITY
    return {"text": " ".join(sentences), "label": label, "n_positive": n_positive, "n_negative": n_negative,
            "positivity": positivity}


def _corpus_positivity(rng: random.Random) -> float:
    u = rng.random()
    if u < 0.4:
        return min(1.0, max(0.0, rng.gauss(0.85, 0.1)))
    if u < 0.8:
        return min(1.0, max(0.0, rng.gauss(0.15, 0.1)))
    return 0.5


def make_corpus(n: int, seed: int, split: str = "train") -> list[dict[str, Any]]:
    """n reviews of one split; deterministic in (seed, split), and the splits of one seed are drawn apart."""
    if n < 0:
        raise AlignlabError(f"corpus size must be >= 0, got {n}")
    rng = random.Random(f"alignlab-sentiment-{seed}-{split}")
    return [make_review(rng, _corpus_positivity(rng)) for _ in range(n)]


def write_dataset(directory: str | Path, *, n_train: int, n_test: int, seed: int) -> Path:
    """Write `train.jsonl` and `test.jsonl` (fields text, label, ...) to `directory`, IMDb's layout."""
    directory = Path(directory)
    for split, n in (("train", n_train), ("test", n_test)):
        write_jsonl_atomically(directory / f"{split}.jsonl", make_corpus(n, seed, split), ensure_ascii=True)
    return directory


def load_reviews(source: str | Path, split: str, *, limit: int | None = None,
                 text_field: str = "text", label_field: str = "label") -> tuple[list[str], list[int]]:
    """(texts, labels) of one split of a local directory/file or a `datasets` name (e.g. `imdb`).

    Labels must be integers (1 positive, 0 negative, -1 unlabelled); texts must be non-empty strings. Errors
    name the record and the field. `limit` keeps the first records (IMDb's splits are sorted by label, so the
    records are shuffled with a fixed seed first whenever a limit is given).
    """
    from alignlab.data.sources import read_records

    records, errors = read_records(str(source), split=split, shuffle_seed=0 if limit is not None else None,
                                   limit=limit)
    if errors:
        raise DataError(errors[0])
    if not records:
        raise DataError(f"{source}: split '{split}' has no records")
    texts, labels = [], []
    for record in records:
        text, label = record.data.get(text_field), record.data.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{record.where}: field '{text_field}' must be a non-empty string")
        if isinstance(label, bool) or not isinstance(label, int) or label not in (POSITIVE, NEGATIVE, NO_MAJORITY):
            raise DataError(f"{record.where}: field '{label_field}' must be 1, 0 or -1; got {label!r}")
        texts.append(text)
        labels.append(label)
    return texts, labels


def review_prefix(text: str, n_words: int) -> str:
    """The first `n_words` whitespace-separated words of a review, joined by single spaces (the prompt).

    f-DPO's generation script takes 4 words; the DPO paper 2-8 tokens. No trailing space: byte-level BPE
    tokenizers attach the space to the next word, so the policy continues with " word" as in training.
    """
    words = text.split()
    return " ".join(words[:n_words])


__all__ = [
    "NEGATIVE",
    "NEGATIVE_ADJECTIVES",
    "NO_MAJORITY",
    "POSITIVE",
    "POSITIVE_ADJECTIVES",
    "load_reviews",
    "make_corpus",
    "make_review",
    "review_prefix",
    "write_dataset",
]
