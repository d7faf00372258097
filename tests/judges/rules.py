"""Judge functions that tests name by reference (py:tests.judges.rules:longer, py:<path>/rules.py:longer)."""


def longer(prompt: str, completion: str) -> float:
    """A reward judge: the completion's length in words."""
    return float(len(completion.split()))


def first_is_longer(prompt: str, a: str, b: str) -> bool:
    """A pairwise judge: a is better when it has more characters."""
    return len(a) > len(b)


NOT_CALLABLE = 3


def count_e(prompts: list[str], completions: list[str]) -> list[float]:
    """A batched reward judge: the number of 'e' in each completion."""
    return [float(c.count("e")) for c in completions]
