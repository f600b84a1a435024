"""The passkey retrieval prompt of the paper (Section 3.3, after Mohtashami & Jaggi 2023)."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

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
    """One passkey-format training document (prompt followed by its answer) with whole filler sentences."""
    total = rng.randint(0, max_fillers)
    before = rng.randint(0, total)
    key = random_key(rng)
    return prompt(key, before, total - before) + f" {key}."


def training_ids(tokenizer, rng: random.Random, window: int) -> list[int]:
    """One passkey-format pretraining document of at most ``window`` tokens: the paper's prompt followed by its
    answer, with the filler cut at token granularity and the intro dropped half of the time, so that the distance
    from the needle to the question varies over the whole window (at L = 128 the paper's full prompt leaves no
    room for a single filler sentence, and a fixed distance would teach a fixed offset, not retrieval)."""
    seg = _segments(tokenizer)
    key = random_key(rng)
    needle_ids, answer = _enc(tokenizer, " " + needle(key)), _enc(tokenizer, f" {key}.")
    fixed = len(needle_ids) + len(seg["question"]) + len(answer)
    bos = seg["head"][:1] if tokenizer.bos_token_id is not None else []
    head = seg["head"] if rng.random() < 0.5 and len(seg["head"]) + fixed <= window else bos
    budget = window - len(head) - fixed
    if budget < 0:
        raise ValueError(f"a passkey document needs {len(head) + fixed} tokens; the window is {window}")
    n = rng.randint(0, budget)
    n_before = rng.randint(0, n)
    stream = seg["filler"] * (budget // len(seg["filler"]) + 1)
    before = stream[len(stream) - n_before:]  # ends with a whole sentence, as the paper's filler does
    after = stream[:n - n_before]
    return head + before + needle_ids + after + seg["question"] + answer


# --- evaluation (Table 4's protocol; also the base model's retrieval check within its own window) -----------------

@dataclass
class Trial:
    ids: list[int]   # the whole prompt, BOS first
    key: str
    k: int           # tokens from the first token of the needle to the end of the input (the paper's k)


def _enc(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _segments(tokenizer, intro: bool = True) -> dict[str, list[int]]:
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return {"head": bos + (_enc(tokenizer, INTRO) if intro else []), "filler": _enc(tokenizer, " " + FILLER),
            "question": _enc(tokenizer, " " + QUESTION)}


def make_trial(tokenizer, key: str, n_before: int, n_after: int, intro: bool = True) -> Trial:
    """The paper's prompt (without its intro if ``intro`` is false), assembled from separately tokenized segments
    so that k is exact."""
    seg = _segments(tokenizer, intro)
    tail = _enc(tokenizer, " " + needle(key)) + seg["filler"] * n_after + seg["question"]
    return Trial(ids=seg["head"] + seg["filler"] * n_before + tail, key=key, k=len(tail))


def trial_for(tokenizer, key: str, k: int, length: int, intro: bool = True) -> Trial:
    """A prompt of at most ``length`` tokens (filled up with filler before the needle) whose k is as close to ``k``
    as whole filler sentences allow."""
    seg = _segments(tokenizer, intro)
    needle_len = len(_enc(tokenizer, " " + needle(key)))
    fixed_tail = needle_len + len(seg["question"])
    free = length - len(seg["head"]) - fixed_tail
    if free < 0:
        raise ValueError(f"the passkey prompt needs {length - free} tokens without filler; {length} is too short")
    n_after = min(max(0, round((k - fixed_tail) / len(seg["filler"]))), free // len(seg["filler"]))
    room = free - n_after * len(seg["filler"])
    n_before = max(0, room // len(seg["filler"]))
    return make_trial(tokenizer, key, n_before, n_after, intro)


def retrieved(model, tokenizer, t: Trial) -> bool:
    """Greedy decoding after the prompt; right if the first number generated is the key."""
    import torch

    n_new = len(_enc(tokenizer, " " + t.key)) + 1
    ids = torch.tensor([t.ids], device=model.device)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id or 0)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    m = re.search(r"\d+", text)
    return bool(m) and m.group(0) == t.key


def k_grid(window: int, n: int = 32) -> list[int]:
    """``n`` values of k evenly spaced over the window (the paper: 32 over L')."""
    return sorted({max(1, round(window * (i + 1) / n)) for i in range(n)})


def accuracy(model, tokenizer, length: int, ks: list[int], trials: int, seed: int, intro: bool = True) -> list[dict]:
    """For each target k: ``trials`` prompts of at most ``length`` tokens with random keys; the fraction retrieved."""
    rng = random.Random(seed)
    rows = []
    for k in ks:
        hits, actual = 0, []
        for _ in range(trials):
            t = trial_for(tokenizer, random_key(rng), k, length, intro)
            hits += retrieved(model, tokenizer, t)
            actual.append(t.k)
        rows.append({"k": k, "k_actual": round(sum(actual) / len(actual)), "correct": hits, "trials": trials,
                     "accuracy": hits / trials})
    return rows


def k_max(rows: list[dict], threshold: float = 0.2) -> int:
    """The paper's effective window: the largest k such that every k' <= k is retrieved in >= ``threshold`` of
    its trials (0 if the smallest k already fails)."""
    best = 0
    for r in sorted(rows, key=lambda r: r["k"]):
        if r["accuracy"] < threshold:
            break
        best = r["k"]
    return best
