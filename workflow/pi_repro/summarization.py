"""Long-document summarization (the paper's Table 6, GovReport): the prompt, the loss mask, fine-tuning, sampled
generation, ROUGE with ``rouge-score``, the LEAD baseline and a paired bootstrap between two models.

Each example is the paper's prompt around the document, then the reference summary:

    <s> "Read the following article and then summarize it.\\n" document "\\nNow summarize the above article.\\nSummary:"
        summary </s>

The document is cut to its first tokens so that the prompt, the whole instruction and question, and the summary
(cut to ``summary_tokens``) fit the model's window (and to at most ``doc_tokens``: the paper's 15000). The loss is
on the summary tokens and the closing ``</s>`` only. Generation gives the same prompt without the summary.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import targets
from .io import input_device

INTRO = "Read the following article and then summarize it.\n"
OUTRO = "\nNow summarize the above article.\nSummary:"
IGNORE = -100  # label of a position the loss skips
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
ROUGE_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}

DEFAULTS = {"summary_tokens": 1000, "doc_tokens": None, "epochs": 10, "prompt": {"intro": INTRO, "outro": OUTRO},
            "generate": {"temperature": 0.5, "top_p": 0.95, "max_new_tokens": 1000, "batch_size": 8},
            "lead": {"section": None}, "train_docs": None, "test_docs": None, "bootstrap": 1000}


def protocol(cfg: dict) -> dict:
    """The config's ``summarization`` block over the paper's protocol (Table 6)."""
    s = cfg.get("summarization", {})
    out = {**DEFAULTS, **s}
    for k in ("prompt", "generate", "lead"):
        out[k] = {**DEFAULTS[k], **s.get(k, {})}
    return out


# Each job reads its own slice of the protocol (its rule's param): a change reruns the jobs whose output it changes
SLICES = {
    "finetune": ("prompt", "summary_tokens", "doc_tokens", "epochs", "train_docs"),  # rule summarize_finetune
    "generate": ("prompt", "doc_tokens", "generate", "test_docs"),  # rule summarize (and its fine-tune, an input)
    "score": ("generate", "summary_tokens", "bootstrap"),  # rule rouge: recorded beside the scores
    "lead": ("test_docs", "lead"),  # rule rouge_lead: the test documents and the lead section, nothing trained
}


def protocol_slice(spec: dict, job: str) -> dict:
    """The part of the protocol (``protocol``) that job ``job`` of ``SLICES`` depends on."""
    return {k: spec[k] for k in SLICES[job]}


# ------------------------------------------------------------------------------------------------- examples
def documents(corpus: str | Path, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """The (id, text, summary) documents of a split; ``limit``: a seeded subset of that many (in corpus order)."""
    from .data import read_corpus

    docs = [d for d in read_corpus(corpus) if d["split"] == split]
    missing = [d["id"] for d in docs if not str(d.get("summary") or "").strip()]
    if missing:
        raise ValueError(f"{corpus}: {len(missing)} {split} documents have no summary (e.g. {missing[0]!r}); a "
                         "summarization dataset needs a 'summary' field on every document")
    if not docs:
        raise ValueError(f"{corpus}: no {split} documents")
    if limit is not None and limit < len(docs):
        keep = set(random.Random(seed).sample(range(len(docs)), limit))
        docs = [d for i, d in enumerate(docs) if i in keep]
    return docs


def _enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _pad_id(tok) -> int:
    """Padding: the tokenizer's pad token, its EOS when it has none (masked out either way)."""
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int  # tokens before the summary (the generation prompt)
    doc_kept: int  # document tokens kept
    doc_len: int  # document tokens in all


def doc_budget(window: int, intro: int, outro: int, summary_tokens: int, doc_tokens: int | None) -> int:
    """Document tokens that fit: the window less BOS, the instruction, the question and the summary with its EOS."""
    room = window - 1 - intro - outro - summary_tokens - 1
    if room < 1:
        raise ValueError(f"window {window}: the prompt ({intro} + {outro} tokens) and a summary of {summary_tokens} "
                         "tokens leave no room for the document")
    return min(room, doc_tokens) if doc_tokens else room


def encode(tok, text: str, summary: str | None, window: int, summary_tokens: int, doc_tokens: int | None = None,
           intro: str = INTRO, outro: str = OUTRO) -> Example:
    """One example (``summary`` None: the generation prompt only), segments tokenized apart and joined."""
    a, b, d = _enc(tok, intro), _enc(tok, outro), _enc(tok, text)
    keep = doc_budget(window, len(a), len(b), summary_tokens, doc_tokens)
    prompt = [tok.bos_token_id] + a + d[:keep] + b
    if summary is None:
        return Example(prompt, [IGNORE] * len(prompt), len(prompt), min(keep, len(d)), len(d))
    s = _enc(tok, " " + summary.strip())[:summary_tokens] + [tok.eos_token_id]
    return Example(prompt + s, [IGNORE] * len(prompt) + s, len(prompt), min(keep, len(d)), len(d))


def encode_docs(tok, docs: list[dict], window: int, spec: dict, with_summary: bool = True) -> list[Example]:
    p = spec["prompt"]
    return [encode(tok, d["text"], d["summary"] if with_summary else None, window, spec["summary_tokens"],
                   spec.get("doc_tokens"), p["intro"], p["outro"]) for d in docs]


class Examples:
    """A torch dataset of examples (input ids and labels, unpadded)."""

    def __init__(self, examples: list[Example]):
        if not examples:
            raise ValueError("no summarization examples")
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        e = self.examples[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


class PadCollator:
    """Right-pad a batch to its longest example: padding is masked out of attention and loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features):
        import torch

        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# ----------------------------------------------------------------------------------------------- fine-tune
EXAMPLES = "train-examples.safetensors"  # the encoded training split, beside the run's exports (rank 0 writes it)


def save_examples(examples: list[Example], path: Path) -> None:
    """The examples as flat token arrays with offsets (safetensors: nothing is unpickled when they are read)."""
    import torch
    from safetensors.torch import save_file

    from .io import atomic_path

    lengths = [len(e.input_ids) for e in examples]
    with atomic_path(path) as tmp:
        save_file({"input_ids": torch.tensor([t for e in examples for t in e.input_ids], dtype=torch.int32),
                   "labels": torch.tensor([t for e in examples for t in e.labels], dtype=torch.int32),
                   "offsets": torch.tensor([0, *np.cumsum(lengths).tolist()], dtype=torch.int64),
                   "meta": torch.tensor([[e.prompt_len, e.doc_kept, e.doc_len] for e in examples], dtype=torch.int64)},
                  str(tmp))


def load_examples(path: Path) -> list[Example]:
    from safetensors.torch import load_file

    t = load_file(str(path))
    ids, labels, off = t["input_ids"].tolist(), t["labels"].tolist(), t["offsets"].tolist()
    return [Example(ids[a:b], labels[a:b], *m) for a, b, m in zip(off[:-1], off[1:], t["meta"].tolist())]


def training_examples(tok, corpus: str, spec: dict, seed: int, window: int, cache: Path, rank: int,
                      world: int) -> list:
    """The encoded training split: rank 0 reads and tokenizes the corpus (GovReport: 17k documents) and writes it
    to ``cache``; the other ranks read that file after a barrier (before, each of 128 ranks tokenized it all)."""
    from . import finetune as ft

    if rank == 0:
        examples = encode_docs(tok, documents(corpus, "train", spec.get("train_docs"), seed), window, spec)
        if world > 1:
            save_examples(examples, cache)
    ft._barrier(world)
    if rank != 0:
        examples = load_examples(cache)  # written by this job's rank 0 just now
    return examples


def finetune(init: str, corpus: str, spec: dict, hp: dict, method: str, ctx: int, base_window: int, outdir: str,
             manifest: str, options: dict | None = None) -> dict | None:
    """Fine-tune checkpoint ``init`` to summarize, at its own window (PI keeps its position scaling), for
    ``spec['epochs']`` epochs of the training split; export the last step (``outdir/step{N}``) and write
    ``manifest`` (``finetune.json``) last. One process, or one of ``WORLD_SIZE`` ranks (ZeRO-3 as configured)."""
    from . import finetune as ft
    from . import modeling
    from .io import read_json, sha256_file, sha256_weights, write_json

    rank, world = ft.distributed(bool(hp.get("deepspeed")))
    tok = modeling.load_tokenizer(init)
    window = int(read_json(Path(init) / "config.json")["max_position_embeddings"])
    examples = training_examples(tok, corpus, spec, hp["seed"], window, Path(outdir) / EXAMPLES, rank, world)
    per_epoch = len(examples) // hp["global_batch"]
    if per_epoch == 0:
        raise ValueError(f"{corpus}: {len(examples)} training documents, fewer than one batch of {hp['global_batch']}")
    hp = dict(hp, steps=spec["epochs"] * per_epoch)
    # what identifies the run (hashes of the weights and the corpus): read by rank 0 alone
    params = {"hp": hp, "spec": spec, "init": sha256_weights(init), "data": sha256_file(corpus)} if rank == 0 else None
    options = ft.with_defaults(options)  # tracking, and the resume state deleted after the manifest unless kept
    trained = ft.train_and_export(init, Examples(examples), hp, outdir, [hp["steps"]], params, window, rank, world,
                                  collator=PadCollator(_pad_id(tok)), label=f"summarize {init}",
                                  report_to=options["report_to"])
    if rank != 0:
        return None
    (Path(outdir) / EXAMPLES).unlink(missing_ok=True)  # every rank has read it
    kept = [e.doc_kept / e.doc_len for e in examples if e.doc_len]
    record = {"task": "summarize", "init": init, "method": method, "ctx": ctx, "base_window": base_window,
              "window": window, "hp": hp, "spec": spec, "data": corpus, "train_docs": len(examples),
              "steps_per_epoch": per_epoch, "summary_tokens_trained": int(sum(sum(x != IGNORE for x in e.labels)
                                                                              for e in examples)),
              "doc_fraction_kept_mean": float(np.mean(kept)) if kept else None,
              **{k: trained[k] for k in ("world_size", "deepspeed_zero_stage", "final_train_loss", "resumed_from")},
              "final": f"step{hp['steps']}",
              "checkpoints": ft.verify_exports(init, [hp["steps"]], outdir, method, ctx, base_window)}
    write_json(manifest, record)
    ft.drop_resume_state(Path(outdir) / "_trainer", options["keep_resume_state"])
    return record


# ---------------------------------------------------------------------------------------------- generation
def generate(model, tok, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int,
             batch_size: int = 8, progress: bool = False) -> list[str]:
    """Sampled continuations (temperature, nucleus top-p) of each prompt, left-padded in batches of similar
    length; seeded, so the same prompts, seed and batch size give the same summaries. In the prompts' order."""
    import torch
    from tqdm import tqdm

    pad = _pad_id(tok)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out: list[str | None] = [None] * len(prompts)
    torch.manual_seed(seed)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", unit=" batch", disable=not progress):
        n = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), n), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, n - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, n - len(prompts[i]):] = 1
        ids, mask = ids.to(input_device(model)), mask.to(input_device(model))
        sample = temperature > 0
        with torch.no_grad():
            gen = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=sample,
                                 temperature=temperature if sample else None, top_p=top_p if sample else None,
                                 top_k=None, pad_token_id=pad, eos_token_id=tok.eos_token_id)
        for r, text in zip(batch, tok.batch_decode(gen[:, n:], skip_special_tokens=True)):
            out[r] = text.strip()
    return out


# -------------------------------------------------------------------------------------------------- scoring
def scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(predictions: list[str], references: list[str]) -> list[dict]:
    """Per-document ROUGE-1/2/L F1 (``rouge-score``, Porter stemming on), each in [0, 1]."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    sc = scorer()
    return [{t: s[t].fmeasure for t in ROUGE_TYPES} for s in (sc.score(r, p) for p, r in zip(predictions, references))]


def corpus_scores(per_doc: list[dict]) -> dict:
    """The corpus score as the paper reports it: the mean over documents of each F1, in points (x100)."""
    return {t: 100 * float(np.mean([d[t] for d in per_doc])) for t in ROUGE_TYPES}


def lead(text: str, section: str | None = None) -> str:
    """The LEAD baseline: the first sentence of ``section`` (a heading line such as DESCRIPTION in a manual page),
    or of the document when it has no such section."""
    body = text
    if section:
        m = re.search(rf"(?m)^{re.escape(section)}\s*$", text)
        if m:
            body = text[m.end():]
    body = " ".join(body.split())
    m = re.search(r"(.+?[.!?])(\s|$)", body)
    return (m.group(1) if m else body).strip()


def paired_bootstrap(a: list[float], b: list[float], n: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over documents (paired) and its 95% percentile interval from ``n`` resamples of documents."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs two equally long non-empty score lists ({a.size} vs {b.size})")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci95": [float(lo), float(hi)], "n_docs": int(d.size), "resamples": n}


def hparams(cfg: dict, size: str, model: str) -> dict:
    """The summarization fine-tune's optimizer: the fine-tunes' (train block, the size's lr), with the batch and
    lr of the summarization block where it gives them; its steps are set from the epochs in the job."""
    s = protocol(cfg)
    hp = targets.train_block(cfg)
    size_cfg = cfg["sizes"][size]
    for k in ("global_batch", "micro_batch"):
        hp[k] = s.get(k, size_cfg.get(k, hp[k]))
    hp.update(lr=s.get("lr", size_cfg["lr"]), seed=cfg["seed"])
    return hp
