"""Deterministic generator of the sample data shipped in alignlab/data/samples/.

Run ``python -m alignlab.data.samples._make_samples [OUT_DIR]`` (default: this directory). The preferences are
synthetic but learnable by a tiny model: ``chosen`` responses are polite, on-topic and helpful, ``rejected``
ones are rude, off-topic or dismissive. Each file uses its own seeded ``random.Random``, so the output is
identical on every run and platform (a test regenerates the files and compares bytes). A few items hold
multi-byte characters.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ITEMS = [
    "coffee maker",
    "hiking boots",
    "desk lamp",
    "rain jacket",
    "cookbook",
    "bicycle helmet",
    "tea kettle",
    "backpack",
    "board game",
    "wireless mouse",
    "yoga mat",
    "garden hose",
    "alarm clock",
    "water bottle",
    "café au lait",
    "crème brûlée",
    "jalapeño salsa",
    "piña colada",
    "smörgåsbord platter",
    "naïve painting",
    "sketchbook",
    "phone case",
    "reading chair",
    "sleeping bag",
    "frying pan",
    "umbrella",
    "travel mug",
    "winter scarf",
    "camping stove",
    "bookshelf",
    "mechanical keyboard",
    "picnic basket",
    "flower pot",
    "toaster",
    "noise-cancelling headphones",
    "jigsaw puzzle",
    "soup pot",
    "Tōkyō guidebook",
    "running shoes",
    "watercolour set",
]
QUALITIES = [
    "sturdy",
    "well made",
    "easy to use",
    "good value",
    "comfortable",
    "reliable",
    "thoughtfully designed",
    "pleasant to use every day",
    "better than I expected",
    "simple and practical",
]
TASKS = [
    (
        "bake bread at home",
        (
            "mix flour, water, salt and yeast, let the dough rise, shape it, and "
            "bake it in a hot oven until the crust is golden"
        ),
    ),
    (
        "learn to juggle",
        (
            "start with one ball, then two, and practise throwing in a gentle arc at eye level "
            "before adding the third"
        ),
    ),
    ("start running", "begin with short easy runs three times a week and increase the distance slowly"),
    ("keep a plant alive", "give it light, water it when the top of the soil is dry, and avoid overwatering"),
    ("save money on groceries", "plan your meals for the week, write a list, and buy staples in bulk"),
    (
        "write a cover letter",
        "open with the role you want, show two concrete achievements, and close politely",
    ),
    (
        "fall asleep faster",
        "keep a regular bedtime, dim the lights, and put your phone away an hour before bed",
    ),
    ("clean a cast iron pan", "rinse it with hot water, scrub gently, dry it fully, and rub in a little oil"),
    ("learn a new language", "practise a little every day, read simple texts, and talk with native speakers"),
    ("organise my desk", "clear everything off, keep only daily tools within reach, and label a few boxes"),
    (
        "make a good cup of tea",
        "heat fresh water, warm the pot, and steep the leaves for three to four minutes",
    ),
    ("prepare for an interview", "research the company, rehearse answers aloud, and prepare two questions"),
    ("fix a flat bicycle tyre", "remove the wheel, find the hole, patch the tube, and pump it up again"),
    (
        "stay focused while studying",
        "work in short blocks of twenty-five minutes with small breaks between them",
    ),
    (
        "cook rice on the stove",
        (
            "rinse the rice, use about one and a half cups of water per cup, and simmer "
            "covered for fifteen minutes"
        ),
    ),
    ("make a café crème", "pull a long espresso and top it with gently steamed milk"),
    ("paint a room", "protect the floor, tape the edges, apply a primer, and use two thin coats of paint"),
    (
        "be a better listener",
        ("let the other person finish, ask follow-up questions, and repeat back what you heard"),
    ),
    ("plan a weekend trip", "pick a destination close by, book a place to stay early, and pack light"),
    ("write a thank-you note", "name the gift or favour, say how it helped, and end with a warm wish"),
]
TOPICS = [
    "rainy days",
    "public libraries",
    "learning to cook",
    "morning walks",
    "board games with friends",
    "writing letters by hand",
    "growing tomatoes",
    "visiting museums",
    "learning music",
    "city parks",
    "the smell of fresh coffee ☕",
    "long train journeys",
    "autumn leaves",
    "baking with children",
]
OPENERS = [
    "Sure!",
    "Happy to help.",
    "Great question.",
    "Of course.",
    "Thanks for asking.",
    "Good idea!",
    "Gladly.",
    "Absolutely.",
]
CLOSERS = [
    "I hope this helps!",
    "Enjoy!",
    "Good luck, you can do it.",
    "Have a lovely day.",
    "Let me know if you need more tips.",
    "Have fun with it!",
    "Take care.",
]
RUDE = [
    "Figure it out yourself.",
    "That is a stupid question.",
    "Why would anyone care about that?",
    "Ugh, not this again.",
    "Stop bothering me.",
    "Whatever, I am not interested.",
    "Ask someone else.",
]
OFF_TOPIC = [
    "I would rather talk about the weather on Mars.",
    "Did you know that penguins cannot fly?",
    "My favourite colour is beige, by the way.",
    "Bananas are technically berries, anyway.",
    "Let me tell you about my cousin's parking ticket instead.",
]
PRAISE = ["I would happily recommend it to a friend.", "It is a pleasure to use.", "It is worth every penny."]
REASONS = [
    "it brings calm and joy to an ordinary day",
    "it is a simple way to relax",
    "it connects us with others and with ourselves",
]
DISMISSALS = [
    "are boring and I do not care.",
    "is pointless, just like this chat.",
    "are a waste of everyone\u2019s time.",
]
NEGATIVE = [
    "It is terrible and a waste of money.",
    "Honestly it is awful and broke right away.",
    "It is the worst thing I have ever seen.",
    "Nobody should ever buy it.",
]


def _review(rng: random.Random, item: str) -> tuple[str, str, str]:
    prompt = rng.choice(
        [
            "Write a short review of the {}.",
            "What do you think of the {}?",
            "Describe the {} in a few words.",
            "Would you recommend the {}?",
        ]
    ).format(item)
    q1, q2 = rng.sample(QUALITIES, 2)
    chosen = f"{rng.choice(OPENERS)} The {item} is {q1} and {q2}. {rng.choice(PRAISE)} {rng.choice(CLOSERS)}"
    rejected = rng.choice(
        [
            f"{rng.choice(RUDE)} {rng.choice(NEGATIVE)}",
            f"{rng.choice(OFF_TOPIC)} {rng.choice(RUDE)}",
            f"The {item}? {rng.choice(NEGATIVE)} {rng.choice(RUDE)}",
        ]
    )
    return prompt, chosen, rejected


def _howto(rng: random.Random, task: str, steps: str) -> tuple[str, str, str]:
    prompt = rng.choice(
        [
            "How do I {}?",
            "Can you explain how to {}?",
            "What is the best way to {}?",
            "Any tips on how to {}?",
        ]
    ).format(task)
    opener, closer = rng.choice(OPENERS), rng.choice(CLOSERS)
    chosen = f"{opener} To {task}, {steps}. {closer}"
    if len(chosen.split()) > 40:  # keep responses within 8-40 words
        chosen = f"To {task}, {steps}. {closer}"
    rejected = rng.choice(
        [
            f"{rng.choice(RUDE)} Nobody needs to {task}.",
            f"{rng.choice(OFF_TOPIC)} {rng.choice(RUDE)}",
            f"Why would you even want to {task}? {rng.choice(RUDE)}",
        ]
    )
    return prompt, chosen, rejected


def _opinion(rng: random.Random, topic: str) -> tuple[str, str, str]:
    prompt = rng.choice(
        ["What do you think about {}?", "Tell me something nice about {}.", "Why do people enjoy {}?"]
    ).format(topic)
    chosen = (
        f"{rng.choice(OPENERS)} Many people love {topic} because {rng.choice(REASONS)}. {rng.choice(CLOSERS)}"
    )
    rejected = f"{rng.choice(RUDE)} {topic.capitalize()} {rng.choice(DISMISSALS)}"
    return prompt, chosen, rejected


def _pair(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.random()
    if kind < 0.45:
        return _review(rng, rng.choice(ITEMS))
    if kind < 0.8:
        return _howto(rng, *rng.choice(TASKS))
    return _opinion(rng, rng.choice(TOPICS))


def _pairs(seed: int, n: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [_pair(rng) for _ in range(n)]


SYSTEMS = ["You are a helpful assistant.", "You are a friendly and concise assistant.", "Answer politely."]


def pairs(n: int = 400) -> list[dict]:
    return [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in _pairs(1, n)]


def sft(n: int = 400) -> list[dict]:
    return [{"prompt": p, "completion": c} for p, c, _ in _pairs(2, n)]


def _history(rng: random.Random) -> list[dict]:
    """Zero or one earlier exchange, optionally after a system message."""
    messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.4 else []
    if rng.random() < 0.5:
        p, c, _ = _pair(rng)
        messages += [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
    return messages


def pairs_conversational(n: int = 40) -> list[dict]:
    rng = random.Random(3)
    out = []
    for _ in range(n):
        history = _history(rng)
        p, c, r = _pair(rng)
        out.append(
            {
                "prompt": history + [{"role": "user", "content": p}],
                "chosen": [{"role": "assistant", "content": c}],
                "rejected": [{"role": "assistant", "content": r}],
            }
        )
    return out


def pairs_implicit(n: int = 40) -> list[dict]:
    rng = random.Random(4)
    out = []
    for i in range(n):
        history = _history(rng)
        p, c, r = _pair(rng)
        if (
            i % 4 == 3
        ):  # plain-string conversations: the prompt is cut at the last whitespace of the common prefix
            out.append({"chosen": f"Question: {p}\nAnswer: {c}", "rejected": f"Question: {p}\nAnswer: {r}"})
            continue
        convo = history + [{"role": "user", "content": p}]
        out.append(
            {
                "chosen": convo + [{"role": "assistant", "content": c}],
                "rejected": convo + [{"role": "assistant", "content": r}],
            }
        )
    return out


def pairs_hh(n: int = 40) -> list[dict]:
    rng = random.Random(5)
    out = []
    for _ in range(n):
        prefix = ""
        for _ in range(rng.choice([0, 0, 1, 2])):  # earlier turns stay in the prompt
            p, c, _ = _pair(rng)
            prefix += f"\n\nHuman: {p}\n\nAssistant: {c}"
        p, c, r = _pair(rng)
        prefix += f"\n\nHuman: {p}\n\nAssistant:"
        out.append({"chosen": f"{prefix} {c}", "rejected": f"{prefix} {r}"})
    return out


def sft_messages(n: int = 40) -> list[dict]:
    rng = random.Random(6)
    out = []
    for _ in range(n):
        messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.4 else []
        for _ in range(rng.choice([1, 2, 3])):
            p, c, _ = _pair(rng)
            messages += [{"role": "user", "content": p}, {"role": "assistant", "content": c}]
        out.append({"messages": messages})
    return out


def ranking(n: int = 50) -> list[dict]:
    """Multi-response records: ``ranks`` (1 = best); ``alpha`` (share of annotators preferring the rank-1
    response) for 2-response records, ``votes`` (annotators preferring each response) for the others."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        p, c, r = _pair(rng)
        k = 2 if i % 2 == 0 else rng.choice([3, 4])
        # one good, one bad, and (k > 2) middling ones: the good answer without its closing sentence, or terse
        middling = [c.rsplit(". ", 1)[0] + ".", "I am not sure, maybe search online for it."]
        responses = [c, r] + middling[: k - 2]
        quality = [0, 3] + [1, 2][: k - 2]
        order = list(range(k))
        rng.shuffle(order)
        record = {
            "prompt": p,
            "responses": [responses[j] for j in order],
            "ranks": [sorted(quality).index(quality[j]) + 1 for j in order],
        }
        if k == 2:
            record["alpha"] = round(rng.uniform(0.55, 1.0), 2)
        else:
            total = rng.randint(3, 9)
            votes = [0] * k
            for _ in range(total):  # annotators mostly pick the better responses
                votes[min(range(k), key=lambda j: record["ranks"][j] + rng.random() * 2.5)] += 1
            record["votes"] = votes
        out.append(record)
    return out


def unpaired(n: int = 60) -> list[dict]:
    """KTO's unpaired format: one completion per prompt and a boolean label (true = desirable), about half
    each; the desirable completions are the pairs' chosen responses, the undesirable ones their rejected."""
    rng = random.Random(8)
    out = []
    for _ in range(n):
        p, c, r = _pair(rng)
        label = rng.random() < 0.5
        out.append({"prompt": p, "completion": c if label else r, "label": label})
    return out


FILES = {
    "pairs.jsonl": pairs,
    "pairs_conversational.jsonl": pairs_conversational,
    "pairs_implicit.jsonl": pairs_implicit,
    "pairs_hh.jsonl": pairs_hh,
    "sft.jsonl": sft,
    "sft_messages.jsonl": sft_messages,
    "ranking.jsonl": ranking,
    "unpaired.jsonl": unpaired,
}


def make_samples(out_dir: str | Path) -> list[Path]:
    """Write every sample file into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in FILES.items():
        path = out_dir / name
        lines = [json.dumps(record, ensure_ascii=False) for record in make()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in make_samples(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent):
        print(p)
