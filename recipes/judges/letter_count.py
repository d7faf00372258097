"""A rule judge for the online recipes on the tiny offline model: the reward of a completion is how many times the
letter 'e' occurs in it. Named in a recipe as `judge: py:recipes/judges/letter_count.py:reward` (a path relative
to the directory alignlab runs in); any reward judge spec of alignlab.judges works in its place."""


def reward(prompt: str, completion: str) -> float:
    """Occurrences of 'e' in the completion (the prompt is not scored)."""
    return float(completion.count("e"))
