"""The passkey retrieval prompt of the paper (Section 3.3, after Mohtashami & Jaggi 2023)."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .io import input_device, reset_dynamic_rope

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
    ids = torch.tensor([t.ids], device=input_device(model))
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id or 0)
    return first_number(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)) == t.key


# --- Table 4's evaluation: prompts that fill the window, exact k, every trial recorded -----------------------------
# At the paper's windows a filler sentence (~30 tokens) is nothing; at the default's (L = 128) whole sentences allow
# only two or three distinct k. So the filler is cut at token granularity: the part before the needle is the end
# of a run of filler sentences (it ends with a whole sentence), the part after it the start of one. Every prompt
# has the same length, the window less the answer's room (so the answer is generated inside the window, and
# prompts batch without padding), so a base model evaluated past L really reads a prompt longer than L; k, the
# tokens from the needle's first token to the end of the input, is exact.


@dataclass
class Layout:
    """Where a ``window``-token passkey prompt leaves room for k (same for every key)."""
    window: int
    prompt_len: int  # window - answer room
    k_lo: int        # needle + question, no filler after the needle (the longest needle of any key)
    k_hi: int        # prompt_len - head: no filler before the needle


def digits_stand_alone(tokenizer) -> bool:
    """Whether the tokenizer cuts every digit out as a pre-token of its own that is one token (LLaMA's and this
    project's tokenizers split digits one by one). BPE never merges across pre-tokens, so then a needle or an
    answer has the same number of tokens whatever its 5 digits: one key stands for all 90,000."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if pre is None or getattr(backend, "normalizer", None) is not None:
        return False
    for text in (" " + needle("12345"), " " + needle("67890"), " 12345", " 67890"):
        for piece, _ in pre.pre_tokenize_str(text):
            if any(c.isdigit() for c in piece) and not (len(piece) == 1 and len(_enc(tokenizer, piece)) == 1):
                return False
    return True


def key_lengths(tokenizer) -> tuple[int, int]:
    """(longest needle, longest answer " 12345") in tokens over every 5-digit key: from one key when digits stand
    alone (``digits_stand_alone``), else by tokenizing all 90,000 (seconds)."""
    keys = ["10000"] if digits_stand_alone(tokenizer) else [str(k) for k in range(10000, 100000)]
    needles = tokenizer([" " + needle(k) for k in keys], add_special_tokens=False)["input_ids"]
    answers = tokenizer([" " + k for k in keys], add_special_tokens=False)["input_ids"]
    return max(map(len, needles)), max(map(len, answers))


def layout(tokenizer, window: int, intro: bool = True) -> Layout:
    seg = _segments(tokenizer, intro)
    longest_needle, longest_answer = key_lengths(tokenizer)
    prompt_len = window - longest_answer - 1  # the key and one more token (the number must end)
    return Layout(window, prompt_len, longest_needle + len(seg["question"]), prompt_len - len(seg["head"]))


def k_values(lay: Layout, n: int = 32) -> list[int]:
    """``n`` distinct k evenly spaced over the feasible range (k_lo, k_hi]: the paper's grid L'/n, 2L'/n, ..., L'
    over (0, L'], mapped onto what the prompt's fixed parts leave (needle and question below k_lo; intro and the
    answer's room above k_hi). At the paper's windows this is within about k_lo of the paper's values."""
    if lay.k_hi - lay.k_lo < n:
        raise ValueError(f"a {lay.window}-token passkey prompt allows k from {lay.k_lo} to {lay.k_hi} only: fewer "
                         f"than {n} distinct distances (passkey.num_k); use a longer window, no intro or a smaller "
                         "num_k")
    return [lay.k_lo + round((lay.k_hi - lay.k_lo) * i / n) for i in range(1, n + 1)]


def trial_at(tokenizer, key: str, k: int, length: int, intro: bool = True) -> Trial:
    """The paper's prompt, exactly ``length`` tokens long, with the needle exactly ``k`` tokens from the end."""
    seg = _segments(tokenizer, intro)
    needle_ids = _enc(tokenizer, " " + needle(key))
    n_after = k - len(needle_ids) - len(seg["question"])
    n_before = length - len(seg["head"]) - k
    if n_after < 0 or n_before < 0:
        raise ValueError(f"k = {k} is not possible in a {length}-token prompt with key {key} "
                         f"(needle + question take {len(needle_ids) + len(seg['question'])} tokens, the head "
                         f"{len(seg['head'])})")
    f = seg["filler"]
    stream = f * (max(n_before, n_after) // len(f) + 1)
    before = stream[len(stream) - n_before:] if n_before else []
    return Trial(ids=seg["head"] + before + needle_ids + stream[:n_after] + seg["question"], key=key, k=k)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    # exact at the ends (0 of n: lower bound 0; n of n: upper bound 1), where rounding would leave 1e-16 off
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == n else centre + half)


def newcombe(p1: float, ci1: tuple[float, float], p2: float, ci2: tuple[float, float]) -> tuple[float, float]:
    """95% interval of the difference p1 - p2 of two independent proportions from each one's Wilson interval
    (Newcombe 1998, method 10, the hybrid score interval): the lower half-width combines p1's lower and p2's upper
    half-widths in quadrature, the upper half-width the other two. It holds 0 when the two proportions are
    consistent given both samples' sizes."""
    d = p1 - p2
    return (d - ((p1 - ci1[0]) ** 2 + (ci2[1] - p2) ** 2) ** 0.5,
            d + ((ci1[1] - p1) ** 2 + (p2 - ci2[0]) ** 2) ** 0.5)


def first_number(text: str) -> str | None:
    m = re.search(r"\d+", text)
    return m.group(0) if m else None


def generate_answers(model, tokenizer, trials: list[Trial], batch_size: int = 8) -> list[str]:
    """Greedy continuations of equally long prompts (no padding), as many tokens as the longest key needs + 1."""
    import torch

    n_new = max(len(_enc(tokenizer, " " + t.key)) for t in trials) + 1
    out = []
    for i in range(0, len(trials), batch_size):
        ids = torch.tensor([t.ids for t in trials[i:i + batch_size]], device=input_device(model))
        with torch.no_grad():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id or 0)
        out += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    return out


def evaluate(model, tokenizer, window: int, n_k: int = 32, trials: int = 10, seed: int = 0, intro: bool = True,
             threshold: float = 0.2, batch_size: int = 8, progress: bool = False) -> dict:
    """Table 4's protocol at one window: ``n_k`` distances, ``trials`` random keys each (seeded by seed and window,
    so a rerun asks the same prompts), greedy decoding, success = the first number generated is the key. Returns
    per-k accuracy with its Wilson 95% interval, k_max, and every trial."""
    reset_dynamic_rope(model)  # a window's result does not depend on the windows evaluated before it
    lay = layout(tokenizer, window, intro)
    ks = k_values(lay, n_k)
    rng = random.Random(f"passkey:{seed}:{window}")
    plan = [trial_at(tokenizer, random_key(rng), k, lay.prompt_len, intro) for k in ks for _ in range(trials)]
    answers = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=f"passkey w={window}", mininterval=5)
    for i in range(0, len(plan), batch_size):
        answers += generate_answers(model, tokenizer, plan[i:i + batch_size], batch_size)
        if bar:
            bar.update(len(plan[i:i + batch_size]))
    if bar:
        bar.close()
    records = [{"k": t.k, "key": t.key, "generated": a, "correct": first_number(a) == t.key}
               for t, a in zip(plan, answers)]
    per_k = []
    for k in ks:
        hits = sum(r["correct"] for r in records if r["k"] == k)
        lo, hi = wilson(hits, trials)
        per_k.append({"k": k, "correct": hits, "trials": trials, "accuracy": hits / trials, "ci95": [lo, hi]})
    return {"window": window, "prompt_tokens": lay.prompt_len, "k_lo": lay.k_lo, "k_top": ks[-1],
            "k_max": k_max(per_k, threshold), "per_k": per_k, "trials": records}


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


# --- how the heads read a passkey prompt (docs/calibration.md: why PI at step 0 loses retrieval) -------------------

def key_positions(tokenizer, t: Trial) -> list[int]:
    """Positions of the key's digits in a trial's needle (both copies: "The pass key is K. Remember it. K is ...")."""
    start = len(t.ids) - t.k
    n = len(_enc(tokenizer, " " + needle(t.key)))
    return [start + j for j in range(n) if any(c.isdigit() for c in tokenizer.decode([t.ids[start + j]]))]


def attention_profile(model, tokenizer, trials: list[Trial]) -> dict:
    """How a model's heads read passkey prompts, averaged over ``trials``: one forward pass of each prompt followed
    by its answer (teacher forcing, eager attention). For every answer position (the prompt's last token, which
    predicts the key's first digit, then each digit of the answer but the last) and every layer and head:
    ``target``, the attention weight on the digit it must produce next, in the needle (both copies: the copying
    head of retrieval, an induction head), averaged over answer positions, and ``target_first`` at the first one
    (the question's answer position); ``prev1`` / ``prev2``, the mean weight every position of the prompt puts on
    the token 1 / 2 before it (previous-token heads, the first half of an induction circuit: under PI x2 an
    offset of 2 has the rotation an offset of 1 had in training). ``p_digits``: the mean probability of each
    digit of the key, given the ones before it; ``retrieved``: how often every digit is the most likely token."""
    import torch

    model.set_attn_implementation("eager")
    cfg = model.config
    shape = (cfg.num_hidden_layers, cfg.num_attention_heads)
    target, first, prev1, prev2 = (torch.zeros(shape) for _ in range(4))
    p_digits, retrieved_all = None, 0
    for t in trials:
        answer = _enc(tokenizer, " " + t.key)
        n = len(t.ids)
        ids = torch.tensor([t.ids + answer], device=input_device(model))
        with torch.no_grad():
            out = model(ids, output_attentions=True)
        pos = key_positions(tokenizer, t)
        half = len(pos) // 2  # the needle holds the key twice
        if half == 0 or len(pos) % 2:
            raise ValueError(f"the needle of key {t.key} should hold its digits twice; found {len(pos)} digit tokens")
        digits = [i for i, tok in enumerate(answer) if tokenizer.decode([tok]).strip().isdigit()]
        steps = [n - 1 + i for i in digits]  # the position that predicts each digit of the answer
        q = torch.arange(2, n)
        for layer, a in enumerate(out.attentions):  # (1, heads, T, T)
            a = a[0].float().cpu()
            hits = torch.stack([a[:, j, [pos[d], pos[d + half]]].sum(-1) for d, j in enumerate(steps)])
            target[layer] += hits.mean(0)
            first[layer] += hits[0]
            prev1[layer] += a[:, q, q - 1].mean(-1)
            prev2[layer] += a[:, q, q - 2].mean(-1)
        probs = out.logits[0, steps].float().softmax(-1)
        want = torch.tensor([answer[i] for i in digits])
        p = probs[torch.arange(len(digits)), want]
        p_digits = p if p_digits is None else p_digits + p
        retrieved_all += bool((probs.argmax(-1) == want).all())
    n = len(trials)
    return {"target": (target / n).tolist(), "target_first": (first / n).tolist(), "prev1": (prev1 / n).tolist(),
            "prev2": (prev2 / n).tolist(), "p_digits": (p_digits / n).tolist(), "retrieved": retrieved_all / n,
            "trials": n}
