"""Perplexity by one of two protocols, named in every record (``protocol``) and caption:

* ``sliding`` (the paper's, Tables 1-3; Press et al., 2022), below;
* ``truncated`` (YaRN's ``eval/perplexity.py --truncate``): one window per document, its first W tokens, every token
  after the first scored (``window_spans(..., truncate=True)``).

Sliding window:
Windows of the evaluation length W advance by the stride S < W. The first window of a document scores every
token it can predict (all but its first); each later window scores only the S tokens it adds (fewer at the
end), so every scored token is predicted from a context of at least min(W - S, its position) tokens and every
token of the document after the first is scored exactly once. Perplexity is exp of the token-weighted mean NLL over all
scored tokens of all documents. Only the scored positions go through the output layer, in chunks, so logits of
unscored positions are never materialised.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .io import input_device, reset_dynamic_rope


@dataclass(frozen=True)
class Span:
    doc: int
    begin: int
    end: int
    n_scored: int  # the last n_scored tokens of [begin, end) are scored


PROTOCOLS = ("sliding", "truncated")


def window_spans(n_tokens: int, window: int, stride: int, doc: int = 0, truncate: bool = False) -> list[Span]:
    """The windows of one document of ``n_tokens`` tokens (see module docstring).

    Window k ends at min(W + k·S, n) and spans the W tokens before its end, so every window is full length
    (when the document is) and scores exactly the S tokens it adds (the last one fewer). ``truncate``: the one
    window of the document's first W tokens (all of it if shorter), every token after the first scored.
    """
    if truncate:
        end = min(window, n_tokens)
        return [Span(doc, 0, end, end - 1)] if end > 1 else []
    if stride < 1 or stride >= window:
        raise ValueError(f"need 1 <= stride < window, got stride={stride}, window={window}")
    spans, prev_end, end = [], 1, min(window, n_tokens)
    while prev_end < n_tokens:
        begin = max(0, end - window)
        spans.append(Span(doc, begin, end, end - prev_end))
        prev_end, end = end, min(end + stride, n_tokens)
    return spans


@torch.no_grad()
def score_spans(model, tokens: torch.Tensor, spans: list[Span], batch_size: int = 8, head_chunk: int = 256,
                progress: bool = False, past: int | None = None) -> tuple[np.ndarray, ...]:
    """Sum of NLL (nats, float64) and number of scored tokens per document, for spans over ``tokens``; with
    ``past``, also those of the tokens at document positions >= ``past`` (4 arrays).

    ``tokens`` is a 2-D tensor (documents × length, right-padded) or a list of 1-D tensors.
    """
    n_docs = len(tokens)
    nll = np.zeros(n_docs, dtype=np.float64)
    count = np.zeros(n_docs, dtype=np.int64)
    nll_past, count_past = np.zeros(n_docs, dtype=np.float64), np.zeros(n_docs, dtype=np.int64)
    groups = defaultdict(list)
    for s in spans:
        groups[(s.end - s.begin, s.n_scored)].append(s)
    # a model spread over several GPUs (device_map="auto": 33B/65B) takes its input on its first device and gives
    # its hidden states and logits on its last: the targets follow the logits, the sums are kept on the CPU
    device = input_device(model)
    bar = tqdm(total=len(spans), disable=not progress, desc="windows", unit="win")
    for (length, n), group in sorted(groups.items()):
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            ids = torch.stack([tokens[s.doc][s.begin:s.end] for s in batch])
            # no KV cache: nothing reads it (at 32768 tokens a 7B model would build ~17 GB of it)
            hidden = model.model(input_ids=ids.to(device), use_cache=False).last_hidden_state
            hidden = hidden[:, length - n - 1: length - 1]
            targets = ids[:, length - n:]
            losses = torch.zeros(len(batch), dtype=torch.float64)
            losses_past, counts_past = torch.zeros_like(losses), torch.zeros(len(batch), dtype=torch.long)
            first = torch.tensor([s.end - n for s in batch])  # document position of the first scored
            for c in range(0, n, head_chunk):
                logits = model.lm_head(hidden[:, c:c + head_chunk]).float()
                chunk = targets[:, c:c + head_chunk]
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk.reshape(-1).to(logits.device),
                                     reduction="none").view(len(batch), -1).double().cpu()
                losses += ce.sum(dim=1)
                if past is not None:
                    later = (first[:, None] + c + torch.arange(ce.shape[1])) >= past
                    losses_past += (ce * later).sum(dim=1)
                    counts_past += later.sum(dim=1)
            for s, loss, lp, cp in zip(batch, losses.tolist(), losses_past.tolist(), counts_past.tolist()):
                nll[s.doc] += loss
                count[s.doc] += s.n_scored
                nll_past[s.doc] += lp
                count_past[s.doc] += cp
            bar.update(len(batch))
    bar.close()
    return (nll, count) if past is None else (nll, count, nll_past, count_past)


def sliding_window_nll(model, docs: list[torch.Tensor], window: int, stride: int, batch_size: int = 8,
                       progress: bool = False, past: int | None = None,
                       truncate: bool = False) -> tuple[np.ndarray, ...]:
    """Per-document NLL sums and scored-token counts of every window of ``docs`` (``truncate``: the truncated
    protocol's one window per document)."""
    spans = [s for d, doc in enumerate(docs) for s in window_spans(len(doc), window, stride, d, truncate)]
    reset_dynamic_rope(model)  # a window's result does not depend on the windows scored before it
    return score_spans(model, docs, spans, batch_size=batch_size, progress=progress, past=past)


def perplexity(nll: np.ndarray, count: np.ndarray) -> float:
    return float(math.exp(nll.sum() / count.sum()))


def bootstrap_ci(nll: np.ndarray, count: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap over documents of the corpus perplexity (token-weighted)."""
    if len(nll) < 2 or n_boot <= 0:
        p = perplexity(nll, count)
        return p, p
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(nll), size=(n_boot, len(nll)))
    ppl = np.exp(nll[idx].sum(1) / count[idx].sum(1))
    lo, hi = np.quantile(ppl, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def evaluate(model, docs: list[torch.Tensor], doc_ids: list[str], window: int, stride: int, batch_size: int = 8,
             n_boot: int = 1000, seed: int = 0, progress: bool = False, past: int | None = None,
             truncate: bool = False) -> dict:
    """The full result record of one (model, dataset, window) evaluation (``past``: see ``summarize``)."""
    sums = sliding_window_nll(model, docs, window, stride, batch_size=batch_size, progress=progress, past=past,
                              truncate=truncate)
    return summarize(doc_ids, *sums[:2], window, stride, n_boot=n_boot, seed=seed, past=past, past_sums=sums[2:])


def summarize(doc_ids: list[str], nll: np.ndarray, count: np.ndarray, window: int, stride: int,
              n_boot: int = 1000, seed: int = 0, past: int | None = None, past_sums: tuple = ()) -> dict:
    """A window's record from its per-document NLL sums and scored-token counts (in document order); with
    ``past``, also the perplexity of the tokens at document positions >= ``past`` (``past_sums``: their sums)."""
    nll, count = np.asarray(nll, dtype=np.float64), np.asarray(count, dtype=np.int64)
    lo, hi = bootstrap_ci(nll, count, n_boot=n_boot, seed=seed)
    rec = {
        "window": window,
        "stride": stride,
        "perplexity": perplexity(nll, count),
        "ci95": [lo, hi],
        "n_docs": len(doc_ids),
        "n_scored_tokens": int(count.sum()),
        "docs": doc_records(doc_ids, nll, count, *past_sums),
    }
    if past is not None:
        p_nll, p_count = (np.asarray(x) for x in past_sums)
        rec["past"] = {"position": past, "n_scored_tokens": int(p_count.sum()),
                       "perplexity": perplexity(p_nll, p_count) if p_count.sum() else None}
    return rec


def doc_records(doc_ids: list[str], nll: np.ndarray, count: np.ndarray, nll_past=None, count_past=None) -> list[dict]:
    """Per-document results (the sums are what the bootstrap, and the merge of shards, read back)."""
    out = [{"id": i, "nll_sum": float(a), "n_scored": int(b), "perplexity": float(math.exp(a / b))}
           for i, a, b in zip(doc_ids, nll, count)]
    if nll_past is not None:
        for d, a, b in zip(out, nll_past, count_past):
            d.update(nll_sum_past=float(a), n_scored_past=int(b))
    return out


# Sharding: a long evaluation (the paper's 32768-token PG19 evaluations of one model are GPU-days) runs as shards,
# each the documents of one contiguous range, which run in parallel; their per-document sums merge exactly (fp64,
# in document order) into the record the unsharded job writes. Per-document sums equal the unsharded job's bit
# for bit with batch_size 1 (the paper config's); with larger batches a window may share its batch with windows
# of other documents, and float32 matmuls of another batch shape round differently (~1e-9 relative here).

class Progress:
    """The documents a shard has finished, one JSON line each, appended and flushed to disk as each finishes, so a
    shard that runs out of time (or is preempted) keeps them across its resubmission. The first line is the
    shard's identity (``key``: checkpoint, documents, protocol); a file of another key is started afresh."""

    def __init__(self, path: str | Path, key: dict):
        self.path, self.done = Path(path), {}
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        if lines and json.loads(lines[0]) == {"key": key}:
            for line in lines[1:]:
                try:
                    d = json.loads(line)
                except ValueError:  # a line cut by the kill: that document is scored again
                    continue
                self.done[(d["window"], d["doc"])] = (d["nll"], d["n"], d["nll_past"], d["n_past"])
        else:
            self.path.write_text(json.dumps({"key": key}) + "\n")
        self.resumed = len(self.done)

    def get(self, window: int, doc: str):
        return self.done.get((window, doc))

    def add(self, window: int, doc: str, sums: tuple) -> None:
        self.done[(window, doc)] = sums
        with open(self.path, "a") as f:
            f.write(json.dumps({"window": window, "doc": doc, "nll": sums[0], "n": sums[1], "nll_past": sums[2],
                                "n_past": sums[3]}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def resumable_nll(model, docs: list[torch.Tensor], doc_ids: list[str], window: int, stride: int, progress: Progress,
                  batch_size: int = 8, past: int | None = None, bar: bool = False,
                  truncate: bool = False) -> tuple[np.ndarray, ...]:
    """``sliding_window_nll`` one document at a time, each kept in ``progress`` as it finishes and not scored again
    (its batches never mix documents, so a resumed shard's sums are those of an uninterrupted one, bit for bit).
    Returns the four arrays (NLL, count, and those of positions >= ``past``: zeros without it)."""
    out = np.zeros((4, len(docs)))
    for i, (doc, name) in enumerate(zip(tqdm(docs, disable=not bar, desc=f"documents w={window}"), doc_ids)):
        sums = progress.get(window, name)
        if sums is None:
            got = sliding_window_nll(model, [doc], window, stride, batch_size=batch_size, past=past, truncate=truncate)
            got = got if past is not None else (*got, [0.0], [0])
            sums = (float(got[0][0]), int(got[1][0]), float(got[2][0]), int(got[3][0]))
            progress.add(window, name, sums)
        out[:, i] = sums
    return out[0], out[1].astype(np.int64), out[2], out[3].astype(np.int64)


def shard_ranges(lengths: list[int], shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous document ranges [begin, end) holding about equal numbers of tokens (a range is
    empty when there are fewer documents than shards)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    cum = np.concatenate([[0], np.cumsum(lengths)])
    bounds = [0]
    for k in range(1, shards):  # the document boundary nearest to k/shards of the tokens
        target = cum[-1] * k / shards
        b = min(int(np.searchsorted(cum, target, side="left")), len(lengths))
        if b > 0 and target - cum[b - 1] < cum[b] - target:
            b -= 1
        bounds.append(max(b, bounds[-1]))
    bounds.append(len(lengths))
    return list(zip(bounds[:-1], bounds[1:]))


SHARD_KEYS = ("model", "model_sha256", "docs_file", "docs_sha256", "stride", "rope_parameters", "model_window",
              "task", "dataset", "size", "method", "ctx", "tag", "step")


def merge_shards(records: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """The record of an evaluation from the records of its shards (``shard: {index, of, docs}``): the documents of
    every window in shard order, perplexity and bootstrap interval over all of them. Refuses shards of another
    model, document file or protocol, a missing or repeated shard, or a shard that lacks a window."""
    if not records:
        raise ValueError("no shard records to merge")
    n = records[0]["shard"]["of"]
    got = sorted(r["shard"]["index"] for r in records)
    if got != list(range(n)) or any(r["shard"]["of"] != n for r in records):
        raise ValueError(f"shards {got} of {n}: every shard 0..{n - 1} is needed exactly once")
    records = sorted(records, key=lambda r: r["shard"]["index"])
    first = records[0]
    for r in records[1:]:
        for k in SHARD_KEYS:
            if r.get(k) != first.get(k):
                raise ValueError(f"shard {r['shard']['index']} has {k}={r.get(k)!r}, shard 0 has {first.get(k)!r}: "
                                 "the shards come from different evaluations")
        if set(r["windows"]) != set(first["windows"]):
            raise ValueError(f"shard {r['shard']['index']} has windows {sorted(r['windows'])}, shard 0 "
                             f"{sorted(first['windows'])}")
    merged = {k: v for k, v in first.items() if k not in ("shard", "windows")}
    merged["shards"] = n
    merged["probe_error"] = max(r.get("probe_error") or 0.0 for r in records)
    merged["windows"] = {}
    for w, rec in first["windows"].items():
        docs = [d for r in records for d in r["windows"][w]["docs"]]
        past = rec.get("past_position")
        out = summarize([d["id"] for d in docs], [d["nll_sum"] for d in docs], [d["n_scored"] for d in docs],
                        rec["window"], rec["stride"], n_boot=n_boot, seed=seed, past=past,
                        past_sums=([d["nll_sum_past"] for d in docs], [d["n_scored_past"] for d in docs])
                        if past is not None else ())
        out["seconds"] = round(sum(r["windows"][w].get("seconds", 0.0) for r in records), 2)
        merged["windows"][w] = out
    return merged
