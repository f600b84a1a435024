"""The passkey retrieval prompt of the paper (Section 3.3, after Mohtashami & Jaggi 2023)."""
from __future__ import annotations

import random

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
         "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
QUESTION = "What is the pass key? The pass key is"


def needle(key: str) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def prompt(key: str, n_before: int, n_after: int) -> str:
    """INTRO + FILLER × n_before + needle + FILLER × n_after + QUESTION; the answer is `` {key}``."""
    parts = [INTRO] + [FILLER] * n_before + [needle(key)] + [FILLER] * n_after + [QUESTION]
    return " ".join(parts)


def random_key(rng: random.Random) -> str:
    return str(rng.randint(10000, 99999))


def training_text(rng: random.Random, max_fillers: int) -> str:
    """One passkey-format training document (prompt followed by its answer), for the pretraining mixture."""
    total = rng.randint(0, max_fillers)
    before = rng.randint(0, total)
    key = random_key(rng)
    return prompt(key, before, total - before) + f" {key}."
