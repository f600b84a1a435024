"""RULER (Hsieh et al. 2024, "What's the real context size of your long-context language models?") through
lm-evaluation-harness's ``ruler`` tasks, offline, on a checkpoint the pipeline loaded and verified.

The harness builds each task's prompts for a list of lengths (``max_seq_lengths``), sized with the model's own
tokenizer (handed to it as the checkpoint's folder), 500 per task and length; a job scores the first ``n`` of each
length with greedy decoding and the harness's metric (``string_match_all``: the fraction of the targets found in
the output, case-insensitive). Lengths are prompt lengths: the model's input is up to the length plus the task's
answer (at most ``RULER_ANSWER``), so no prompt is cut.

Only RULER's synthetic tasks run here (``SYNTHETIC``): their haystacks are generated (repeated sentences, random
keys and values, word lists). The essay haystack and the QA sets are downloaded by the harness at load time
(``DOWNLOADED``); the pipeline does not fetch them yet, so validation refuses them by name.

Guards against the harness's failure modes at short lengths, found on this machine: variable tracking retries
forever when its in-context example leaves no room (``timeout``), common-words emits items with no target, and
frequent-words fills the prompt to the length without room for the answer (hence ``RULER_ANSWER`` of room).
"""
from __future__ import annotations

import os
import random
import re
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .targets import RULER_ANSWER, RULER_TASKS

SYNTHETIC = dict(zip(RULER_TASKS, (  # RULER's synthetic tasks (the default of ``ruler.tasks``): what each asks
    "needle in a haystack: one key, number value, repeated-sentence haystack (~passkey)",
    "needle in a haystack: one of many keys, the haystack made of other needles",
    "needle in a haystack: one of many UUID keys, UUID values, haystack of needles",
    "variable tracking: every variable a chain of assignments binds to a value (multi-hop)",
    "common words extraction: the 10 most common words of a long list (aggregation)",
    "frequent words extraction: the 3 most frequent coded words (aggregation)",
), strict=True))
DOWNLOADED = {  # tasks whose data the harness downloads at load time (not fetched by the pipeline yet)
    "niah_single_2": "Paul Graham essays (hub baber/paul_graham_essays)",
    "niah_single_3": "Paul Graham essays (hub baber/paul_graham_essays)",
    "niah_multikey_1": "Paul Graham essays (hub baber/paul_graham_essays)",
    "niah_multiquery": "Paul Graham essays (hub baber/paul_graham_essays)",
    "niah_multivalue": "Paul Graham essays (hub baber/paul_graham_essays)",
    "ruler_qa_squad": "SQuAD v2 (fetched by URL)",
    "ruler_qa_hotpot": "HotpotQA (fetched by URL)",
}


def check_tasks(tasks: list[str]) -> list[str]:
    """Problems with a list of RULER task names (empty: fine)."""
    out = []
    for t in tasks:
        if t in DOWNLOADED:
            out.append(f"{t} needs {DOWNLOADED[t]}, which the pipeline does not fetch; use the synthetic tasks "
                       f"({', '.join(SYNTHETIC)})")
        elif t not in SYNTHETIC:
            out.append(f"{t} is not a RULER task of lm-evaluation-harness 0.4.13 ({', '.join(SYNTHETIC)})")
    return out


def offline(stub: Path) -> None:
    """No download at task load: the hub offline, and an NLTK data folder that satisfies the harness's import-time
    check for punkt_tab (used only by the essay haystack, which is not run) unless the real one is installed."""
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[k] = "1"
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        (stub / "tokenizers" / "punkt_tab").mkdir(parents=True, exist_ok=True)
        os.environ["NLTK_DATA"] = str(stub) + os.pathsep + os.environ.get("NLTK_DATA", "")
        nltk.data.path.insert(0, str(stub))


@contextmanager
def timeout(seconds: int, what: str):
    """Raise TimeoutError naming ``what`` if the block runs longer (main thread only)."""
    def fire(*_):
        raise TimeoutError(what)

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def load_tasks(tasks: list[str], tokenizer_dir: str | Path, lengths: list[int], seed: int,
               seconds: int = 900) -> dict:
    """The harness's tasks with their prompts built at ``lengths`` by the tokenizer in ``tokenizer_dir``, seeded
    (the harness draws haystacks and keys from Python's and NumPy's global generators)."""
    import numpy as np
    from lm_eval.tasks import TaskManager

    bad = check_tasks(tasks)
    if bad:
        raise ValueError("; ".join(bad))
    out = {}
    for t in tasks:  # one at a time: a task that cannot fit a length is named
        random.seed(seed)
        np.random.seed(seed)
        tm = TaskManager(metadata={"tokenizer": str(tokenizer_dir), "max_seq_lengths": sorted(lengths)})
        try:
            with timeout(seconds, f"RULER task {t} built no prompt of lengths {lengths} in {seconds} s: the "
                                  "shortest length is too short for it with this tokenizer (variable tracking's "
                                  "in-context example alone takes about 400 tokens); drop it or use longer lengths"):
                out.update(tm.load([t])["tasks"])
        except TimeoutError as e:
            raise ValueError(str(e)) from None
    return out


def choose(loaded: dict, lengths: list[int], n: int) -> dict[str, list[int]]:
    """The first ``n`` prompts of each task at each length (the harness stores them length by length); refuses a
    length where a task built fewer, or built one without a target (common words at a too short length)."""
    out = {}
    for name, task in loaded.items():
        docs = task.dataset["test"]
        picked = []
        for length in lengths:
            at = [i for i, m in enumerate(docs["max_length"]) if m == length][:n]
            if len(at) < n:
                raise ValueError(f"RULER task {name} built {len(at)} prompts of length {length}; {n} are asked")
            empty = [i for i in at if not docs[i]["outputs"]]
            if empty:
                raise ValueError(f"RULER task {name} at length {length}: prompts without a target (items {empty}): "
                                 "the length is too short for the task with this tokenizer")
            picked += at
        out[name] = picked
    return out


def match_all(generation: str, targets: list[str]) -> float:
    """RULER's ``string_match_all``, written from its definition: the fraction of the targets that occur in the
    output, case-insensitive (control characters of the output read as line breaks, surrounding space removed)."""
    text = re.sub(r"[\x00-\x1f]", "\n", generation).strip().lower()
    return sum(t.lower() in text for t in targets) / len(targets)


def evaluate(model, tokenizer, tokenizer_dir: str | Path, tasks: list[str], lengths: list[int], n: int, seed: int,
             batch_size: int = 1) -> dict:
    """Score ``model`` on ``tasks`` at ``lengths``, ``n`` prompts each: per length, each task's score (0-100) and
    their mean, and every sample (prompt, target, greedy output, score). Each sample's score is recomputed from
    the output by :func:`match_all` and must equal the harness's; no prompt may be cut."""
    import lm_eval
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    from .modeling import input_device

    lengths = sorted(lengths)
    offline(Path(tempfile.gettempdir()) / "pi_repro-nltk-stub")
    loaded = load_tasks(tasks, tokenizer_dir, lengths, seed)
    picked = choose(loaded, lengths, n)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=lengths[-1] + RULER_ANSWER, batch_size=batch_size,
              device=str(input_device(model)))
    res = evaluator.evaluate(lm=lm, task_dict=loaded, samples=picked, log_samples=True, bootstrap_iters=0)
    by_length = {str(x): {"tasks": {}} for x in lengths}
    samples = []
    for name in tasks:
        for s in res["samples"][name]:
            doc, gen = s["doc"], s["resps"][0][0]
            length, kw = doc["max_length"], s["arguments"][0][1]
            prompt = s["arguments"][0][0]
            used = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if used + kw["max_gen_toks"] > lm.max_length:
                raise ValueError(f"RULER task {name} at length {length}: a prompt of {used} tokens and its answer "
                                 f"({kw['max_gen_toks']}) exceed {lm.max_length}: the harness would cut it")
            score = s[str(length)]
            if abs(match_all(gen, doc["outputs"]) - score) > 1e-9:
                raise RuntimeError(f"RULER task {name}, item {s['doc_id']}: the harness scored {score}, its output "
                                   f"{gen!r} against {doc['outputs']} gives {match_all(gen, doc['outputs'])}")
            samples.append({"task": name, "length": length, "doc_id": s["doc_id"], "prompt": prompt,
                            "prompt_tokens": used, "max_gen_toks": kw["max_gen_toks"], "target": doc["outputs"],
                            "generation": gen, "score": score})
        for length in lengths:
            mine = [x["score"] for x in samples if x["task"] == name and x["length"] == length]
            by_length[str(length)]["tasks"][name] = {"score": 100 * sum(mine) / len(mine), "n": len(mine)}
    for rec in by_length.values():
        rec["mean"] = sum(t["score"] for t in rec["tasks"].values()) / len(rec["tasks"])
    return {"harness_version": lm_eval.__version__, "lengths": by_length, "samples": samples,
            "task_versions": {t: res["versions"].get(t) for t in tasks}}


def effective_length(means: dict[int, float], threshold: float) -> int:
    """RULER's effective length: the largest length whose mean is at or above ``threshold``, every shorter length
    tested too (as passkey's k_max); 0 when the shortest is below it."""
    out = 0
    for length in sorted(means):
        if means[length] < threshold:
            break
        out = length
    return out
