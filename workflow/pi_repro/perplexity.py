"""Sliding-window perplexity (Press et al., 2022), the protocol of Tables 1-3.

Windows of the evaluation length W advance by the stride S < W. The first window of a document scores every
token it can predict (all but its first); each later window scores only the S tokens it adds (fewer at the
end), so every scored token is predicted from a context of at least min(W - S, its position) tokens and every
token of the document after the first is scored exactly once. Perplexity is exp of the token-weighted mean NLL over all
scored tokens of all documents. Only the scored positions go through the output layer, in chunks, so logits of
unscored positions are never materialised.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Span:
    doc: int
    begin: int
    end: int
    n_scored: int  # the last n_scored tokens of [begin, end) are scored


def window_spans(n_tokens: int, window: int, stride: int, doc: int = 0) -> list[Span]:
    """The windows of one document of ``n_tokens`` tokens (see module docstring).

    Window k ends at min(W + k·S, n) and spans the W tokens before its end, so every window is full length
    (when the document is) and scores exactly the S tokens it adds (the last one fewer).
    """
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
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sum of NLL (nats, float64) and number of scored tokens per document, for spans over ``tokens``.

    ``tokens`` is a 2-D tensor (documents × length, right-padded) or a list of 1-D tensors.
    """
    n_docs = len(tokens)
    nll = np.zeros(n_docs, dtype=np.float64)
    count = np.zeros(n_docs, dtype=np.int64)
    groups = defaultdict(list)
    for s in spans:
        groups[(s.end - s.begin, s.n_scored)].append(s)
    device = next(model.parameters()).device
    bar = tqdm(total=len(spans), disable=not progress, desc="windows", unit="win")
    for (length, n), group in sorted(groups.items()):
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            ids = torch.stack([tokens[s.doc][s.begin:s.end] for s in batch]).to(device)
            # no KV cache: nothing reads it (at 32768 tokens a 7B model would build ~17 GB of it)
            hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[:, length - n - 1: length - 1]
            targets = ids[:, length - n:]
            losses = torch.zeros(len(batch), dtype=torch.float64, device=device)
            for c in range(0, n, head_chunk):
                logits = model.lm_head(hidden[:, c:c + head_chunk]).float()
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, c:c + head_chunk].reshape(-1),
                                     reduction="none")
                losses += ce.view(len(batch), -1).double().sum(dim=1)
            for s, loss in zip(batch, losses.tolist()):
                nll[s.doc] += loss
                count[s.doc] += s.n_scored
            bar.update(len(batch))
    bar.close()
    return nll, count


def sliding_window_nll(model, docs: list[torch.Tensor], window: int, stride: int, batch_size: int = 8,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    spans = [s for d, doc in enumerate(docs) for s in window_spans(len(doc), window, stride, doc=d)]
    return score_spans(model, docs, spans, batch_size=batch_size, progress=progress)


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
             n_boot: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """The full result record of one (model, dataset, window) evaluation."""
    nll, count = sliding_window_nll(model, docs, window, stride, batch_size=batch_size, progress=progress)
    lo, hi = bootstrap_ci(nll, count, n_boot=n_boot, seed=seed)
    return {
        "window": window,
        "stride": stride,
        "perplexity": perplexity(nll, count),
        "ci95": [lo, hi],
        "n_docs": len(docs),
        "n_scored_tokens": int(count.sum()),
        "docs": [{"id": i, "nll_sum": float(a), "n_scored": int(b), "perplexity": float(math.exp(a / b))}
                 for i, a, b in zip(doc_ids, nll, count)],
    }
