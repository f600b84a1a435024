import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pi_repro import perplexity as P


@pytest.mark.parametrize("n,window,stride", [(100, 16, 4), (17, 16, 15), (5, 16, 4), (64, 16, 15), (33, 8, 3), (16, 16, 1)])
def test_every_token_after_the_first_is_scored_once(n, window, stride):
    spans = P.window_spans(n, window, stride)
    scored = [t for s in spans for t in range(s.end - s.n_scored, s.end)]
    assert scored == list(range(1, n))
    for i, s in enumerate(spans):
        assert s.end - s.begin == min(window, n)  # every window is full length
        if 0 < i < len(spans) - 1:
            assert s.n_scored == stride  # every later window adds exactly S new tokens (the last may add fewer)


def test_stride_larger_than_window_is_refused():
    for stride in (8, 16):
        with pytest.raises(ValueError, match="stride"):
            P.window_spans(100, 8, stride)


def brute_force_nll(model, doc, window, stride):
    """Reference: full logits of every window, log-softmax, pick the scored tokens one by one."""
    total, count = 0.0, 0
    for t in range(1, len(doc)):  # token t is scored by the first window (ends W, W+S, W+2S, ...) containing it
        k = 0 if t < window else -(-(t + 1 - window) // stride)
        end = min(window + k * stride, len(doc))
        begin = max(0, end - window)
        with torch.no_grad():
            logp = F.log_softmax(model(doc[begin:end][None]).logits[0].double(), -1)
        total -= logp[t - begin - 1, doc[t]].item()
        count += 1
    return total, count


@pytest.mark.parametrize("window,stride", [(16, 4), (16, 15), (12, 5), (32, 8)])
def test_sliding_window_matches_brute_force(tiny_llama, window, stride):
    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(0, 97, (n,), generator=g) for n in (70, 16, 9, 41)]
    nll, count = P.sliding_window_nll(tiny_llama, docs, window, stride, batch_size=3)
    for d, doc in enumerate(docs):
        ref, ref_count = brute_force_nll(tiny_llama, doc, window, stride)
        assert count[d] == ref_count == len(doc) - 1
        assert nll[d] == pytest.approx(ref, rel=1e-5)
    ppl = P.perplexity(nll, count)
    assert ppl == pytest.approx(math.exp(sum(brute_force_nll(tiny_llama, d, window, stride)[0] for d in docs)
                                         / sum(len(d) - 1 for d in docs)), rel=1e-5)


def test_output_layer_only_sees_scored_positions(tiny_llama):
    seen = []
    hook = tiny_llama.lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0] * i[0].shape[1]))
    doc = torch.randint(0, 97, (80,))
    P.sliding_window_nll(tiny_llama, [doc], 16, 4, batch_size=64)
    hook.remove()
    assert sum(seen) == 79  # 79 scored tokens, no logits for any other position


def scored_by_chunks(model, tokens, spans, head_chunk):
    """score_spans with the output layer in chunks of ``head_chunk`` positions; also the widths it was called on."""
    widths = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: widths.append(i[0].shape[1]))
    nll, count = P.score_spans(model, tokens, spans, batch_size=3, head_chunk=head_chunk)
    hook.remove()
    return nll, count, widths


def test_output_layer_in_several_chunks_per_window_matches_brute_force(tiny_llama):
    g = torch.Generator().manual_seed(2)
    docs = [torch.randint(0, 97, (n,), generator=g) for n in (70, 41)]
    spans = [s for d, doc in enumerate(docs) for s in P.window_spans(len(doc), 16, 5, doc=d)]
    assert min(s.n_scored for s in spans) == 4  # with chunks of 3, every window runs in two chunks or more
    nll, count, widths = scored_by_chunks(tiny_llama, docs, spans, head_chunk=3)
    assert max(widths) == 3
    refs = [brute_force_nll(tiny_llama, doc, 16, 5) for doc in docs]
    assert list(count) == [n for _, n in refs] and nll == pytest.approx([r for r, _ in refs], rel=1e-5)


def test_right_padded_2d_tokens_score_as_the_documents(tiny_llama):
    """``tokens`` as documents × length, right-padded: spans over each document never read its padding."""
    g = torch.Generator().manual_seed(3)
    docs = [torch.randint(0, 97, (n,), generator=g) for n in (41, 70, 16)]
    spans = [s for d, doc in enumerate(docs) for s in P.window_spans(len(doc), 16, 5, doc=d)]
    refs = [brute_force_nll(tiny_llama, doc, 16, 5) for doc in docs]
    for pad in (0, 96):
        padded = torch.full((len(docs), 80), pad)  # every row padded
        for d, doc in enumerate(docs):
            padded[d, :len(doc)] = doc
        nll, count, _ = scored_by_chunks(tiny_llama, padded, spans, head_chunk=4)
        assert list(count) == [n for _, n in refs] and nll == pytest.approx([r for r, _ in refs], rel=1e-5)


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(0)
    count = rng.integers(100, 200, size=30)
    nll = count * rng.uniform(1.5, 2.5, size=30)
    lo, hi = P.bootstrap_ci(nll, count, n_boot=500, seed=0)
    assert lo < P.perplexity(nll, count) < hi
    assert P.bootstrap_ci(nll, count, n_boot=500, seed=0) == (lo, hi)


def test_evaluate_record_has_per_document_values(tiny_llama):
    docs = [torch.randint(0, 97, (40,)), torch.randint(0, 97, (30,))]
    rec = P.evaluate(tiny_llama, docs, ["a", "b"], window=16, stride=8, n_boot=50)
    assert [d["id"] for d in rec["docs"]] == ["a", "b"]
    assert rec["n_scored_tokens"] == 39 + 29 == sum(d["n_scored"] for d in rec["docs"])
    assert rec["ci95"][0] <= rec["perplexity"] <= rec["ci95"][1]
