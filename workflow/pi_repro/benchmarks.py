"""Table 5: zero-shot multiple-choice benchmarks at the original window, scored by EleutherAI's
lm-evaluation-harness (log-likelihood of each option; acc and acc_norm), never by a scorer of our own.

The paper's tasks (BoolQ, PIQA, RACE-middle, RACE-high, WinoGrande) are the harness's definitions; RACE-middle is
shipped (`resources/lm_eval_tasks/`: the stock RACE task with ``dataset_name: middle``), since the harness's
``race`` is RACE-high only. No copy of them exists offline and a 4M-parameter model could not answer them, so the
default configuration builds stand-ins in the harness's own task format from held-out text the project ships:

* ``cloze``: a word of a held-out test document is hidden; the context is the text before it (at most
  ``context_tokens`` tokens of the model's tokenizer, starting at a word), the options are the true word and
  three words of the same frequency band of the training split (so frequency alone does not give it away), each
  followed by the rest of the word's sentence (LAMBADA/CBT-like: the option is scored as a continuation).
"""
from __future__ import annotations

import collections
import random
import re

from .io import input_device

WORD = re.compile(r"[A-Za-z][A-Za-z_']{2,}")
SENTENCE_END = re.compile(r"[.!?;\n]")


def _bands(train_texts: list[str], band: int) -> tuple[dict[str, int], list[list[str]]]:
    """Words of the training split ranked by frequency, cut into bands of ``band`` words: word -> band index."""
    counts = collections.Counter(w.lower() for t in train_texts for w in WORD.findall(t))
    ranked = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2]
    groups = [ranked[i:i + band] for i in range(0, len(ranked), band)]
    return {w: i // band for i, w in enumerate(ranked)}, groups


def _case_like(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def cloze_items(test_texts: list[str], train_texts: list[str], tokenizer, n_items: int, context_tokens: int,
                seed: int, max_rest_words: int = 8, band: int = 100, distractors: str = "band") -> list[dict]:
    """``n_items`` 4-way cloze items (``context``, ``choices``, ``label``) from the test documents, drawn with
    ``seed``; each item's context ends right before the hidden word, so the harness joins it to each choice with
    its target delimiter " "."""
    rank, groups = _bands(train_texts, band)
    rng = random.Random(seed)
    candidates = []
    for d, text in enumerate(test_texts):
        for m in WORD.finditer(text):
            if m.start() > 0 and text[m.start() - 1] == " " and m.group(0).lower() in rank:
                candidates.append((d, m.start(), m.group(0)))
    rng.shuffle(candidates)
    items = []
    for d, start, word in candidates:
        if len(items) == n_items:
            break
        text = test_texts[d]
        end = SENTENCE_END.search(text, start + len(word))
        rest_text = text[start + len(word):end.end() if end else len(text)].rstrip("\n")
        rest = re.match(rf"(?:\s*\S+){{0,{max_rest_words}}}", rest_text).group(0)  # the text as it is, N words
        before = text[max(0, start - 1 - 8 * context_tokens):start - 1]  # up to the space before the word
        enc = tokenizer(before, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"][-context_tokens:]
        first = offsets[0][0] if offsets else len(before)
        cut = re.search(r"\s\S", before[first:])  # start at a whole word (the first token may be cut)
        context = before[first + cut.end() - 1:] if cut else ""
        while len(tokenizer(context, add_special_tokens=False)["input_ids"]) > context_tokens:  # standalone count
            context = context.split(" ", 1)[1] if " " in context else ""
        if len(context.split()) < 3:
            continue
        if distractors == "context":  # other words of the context: plausible here, so the context must decide
            pool = sorted({w for w in WORD.findall(context) if w != word})
        else:
            pool = [_case_like(w, word) for w in groups[rank[word.lower()]] if w != word.lower()]
        if len(pool) < 3:
            continue
        options = [word] + rng.sample(pool, 3)
        rng.shuffle(options)
        items.append({"id": f"{d}:{start}", "context": context, "choices": [o + rest for o in options],
                      "label": options.index(word), "word": word})
    if len(items) < n_items:
        raise ValueError(f"only {len(items)} cloze items could be built from the test split, {n_items} requested")
    return items


def task_yaml(name: str, data_file: str) -> str:
    """The harness's task definition of a local multiple-choice item file (JSON lines: context, choices, label)."""
    return "\n".join([
        f"task: {name}",
        "dataset_path: json",
        f"dataset_kwargs: {{data_files: {{test: {data_file}}}}}",
        "output_type: multiple_choice",
        "test_split: test",
        'doc_to_text: "{{context}}"',
        'doc_to_choice: "{{choices}}"',
        "doc_to_target: label",
        "metric_list:",
        "  - {metric: acc, aggregation: mean, higher_is_better: true}",
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}",
        "metadata: {version: 1.0}",
        "",
    ])


def run_harness(model, tokenizer, tasks: list[str], include_path: str | None, window: int, batch_size: int,
                seed: int, limit: int | None = None) -> dict:
    """The harness on an already loaded model (its scaling in force), inputs limited to ``window`` tokens; returns
    the harness's results (per task: acc, acc_stderr, acc_norm, ...) and its per-sample log."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=window, batch_size=batch_size,
              device=str(input_device(model)))
    tm = TaskManager(include_path=include_path) if include_path else TaskManager()
    return simple_evaluate(model=lm, tasks=tasks, task_manager=tm, num_fewshot=0, log_samples=True, limit=limit,
                           random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                           fewshot_random_seed=seed)


def sample_record(s: dict) -> dict:
    """What a record keeps of the harness's per-sample log: the item, its target, every option's log-likelihood
    (and whether it is the option's greedy continuation), and the sample's metrics."""
    return {"doc_id": s["doc_id"], "target": s["target"],
            "loglikelihoods": [[float(ll), bool(greedy)] for ll, greedy in (r[0] for r in s["resps"])],
            **{m: s[m] for m in ("acc", "acc_norm") if m in s}}
