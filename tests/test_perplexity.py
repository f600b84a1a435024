import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pi_repro import perplexity as P


@pytest.mark.parametrize("n,window,stride", [(100, 16, 4), (17, 16, 15), (5, 16, 4), (64, 16, 15), (33, 8, 3),
                                             (16, 16, 1)])
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


def test_shard_ranges_cover_every_document_once_balanced_by_tokens():
    lengths = [100, 900, 50, 50, 400, 500, 1000, 10]
    for n in (1, 2, 3, 5, 8, 11):
        ranges = P.shard_ranges(lengths, n)
        assert len(ranges) == n and ranges[0][0] == 0 and ranges[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and all(b <= e for b, e in ranges)
    assert [sum(lengths[b:e]) for b, e in P.shard_ranges(lengths, 3)] == [1000, 1000, 1010]  # a third each
    assert P.shard_ranges([5, 5], 4) == [(0, 1), (1, 1), (1, 2), (2, 2)]  # more shards than documents: some empty
    with pytest.raises(ValueError):
        P.shard_ranges(lengths, 0)


def _shard(index, of, docs, windows=("16",), **extra):
    return {"model": "m", "model_sha256": "x", "docs_file": "e.npz", "docs_sha256": "y", "stride": 8,
            "shard": {"index": index, "of": of}, **extra,
            "windows": {w: {"window": int(w), "stride": 8, "seconds": 1.0,
                            "docs": P.doc_records([f"d{i}" for i in docs], [2.0 * (i + 1) for i in docs],
                                                  [1 + i for i in docs])} for w in windows}}


def test_merge_refuses_shards_of_another_evaluation_or_a_missing_shard():
    merged = P.merge_shards([_shard(1, 2, [2, 3]), _shard(0, 2, [0, 1])], n_boot=20)
    assert [d["id"] for d in merged["windows"]["16"]["docs"]] == ["d0", "d1", "d2", "d3"]  # document order
    assert merged["shards"] == 2 and merged["windows"]["16"]["seconds"] == 2.0
    assert merged["windows"]["16"]["perplexity"] == pytest.approx(math.exp(20 / 10))
    with pytest.raises(ValueError, match=r"every shard 0..2 is needed exactly once"):
        P.merge_shards([_shard(0, 3, [0]), _shard(2, 3, [2])])
    with pytest.raises(ValueError, match=r"every shard"):
        P.merge_shards([_shard(0, 2, [0]), _shard(0, 2, [1])])
    with pytest.raises(ValueError, match=r"shard 1 has model_sha256='z'.*different evaluations"):
        P.merge_shards([_shard(0, 2, [0]), _shard(1, 2, [1], model_sha256="z")])
    with pytest.raises(ValueError, match=r"shard 1 has windows"):
        P.merge_shards([_shard(0, 2, [0]), _shard(1, 2, [1], windows=("16", "32"))])


def test_sharded_evaluation_merges_into_the_unsharded_record_exactly(tmp_path, tiny_llama):
    """The rule's script: one job over every document, and the same evaluation as 3 shards (and as more shards
    than documents: some empty) merged; the merged record equals the one job's, per-document sums included: bit
    for bit with one window per forward pass (the paper config's batch), to float32 rounding with batches of 4 (a
    window's batch holds other documents' windows when unsharded; float32 matmuls of another shape differ in the last
    bits)."""
    import json
    import runpy
    import sys
    from pathlib import Path

    from conftest import save_word_tokenizer
    from pi_repro import data, modeling

    tiny_llama.save_pretrained(tmp_path / "m")
    save_word_tokenizer(tmp_path / "m", tiny_llama.config.vocab_size)
    modeling.seal_checkpoint(tmp_path / "m", tiny_llama.config.max_position_embeddings)
    tok = modeling.load_tokenizer(tmp_path / "m")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 97, int(n)) for n in (90, 40, 130, 17, 64)]
    data.save_docs(tmp_path / "eval.npz", [f"d{i}" for i in range(5)], arrays, 97, data.tokenizer_digest(tok))
    script = str(Path(__file__).resolve().parents[1] / "workflow/scripts/perplexity.py")
    common = ["--bootstrap", "100", "--seed", "3"]
    evaluation = ["--model", str(tmp_path / "m"), "--docs", str(tmp_path / "eval.npz"), "--windows", "16,32",
                  "--stride", "8"]

    def run(*args):  # the script as its rule runs it (in this process: no interpreter start per job)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", [script, *args])
            mp.syspath_prepend(str(Path(script).parent))
            runpy.run_path(script, run_name="__main__")

    # 7 shards of 5 documents: some shards are empty; --past: the tokens past position 50 reported apart, merged too
    for batch, n, past in (("1", 3, []), ("1", 7, ["--past", "50"]), ("4", 3, [])):
        args = [*evaluation, "--batch-size", batch, *past]
        run(*args, *common, "--out", str(tmp_path / "whole.json"))
        whole = json.loads((tmp_path / "whole.json").read_text())
        parts = [str(tmp_path / f"{k}-of-{n}.json") for k in range(n)]
        for k in range(n):
            run(*args, "--shard", str(k), str(n), "--out", parts[k])
        run("--merge", *reversed(parts), *common, "--out", str(tmp_path / "merged.json"))
        merged = json.loads((tmp_path / "merged.json").read_text())
        assert merged["shards"] == n
        assert {k: v for k, v in merged.items() if k not in ("windows", "shards")} == \
            {k: v for k, v in whole.items() if k != "windows"}
        for w, rec in whole["windows"].items():
            got = merged["windows"][w]
            assert (got["n_docs"], got["n_scored_tokens"]) == (rec["n_docs"], rec["n_scored_tokens"])
            if batch == "1":
                assert ("past" in got) == bool(past) and got.get("past") == rec.get("past")
                for key in ("perplexity", "ci95", "docs"):
                    assert got[key] == rec[key], (n, w, key)
            else:
                assert got["perplexity"] == pytest.approx(rec["perplexity"], rel=1e-7)
                assert got["ci95"] == pytest.approx(rec["ci95"], rel=1e-7)


def test_tokens_past_a_position_are_reported_apart(tiny_llama):
    """``past``: the NLL of the tokens at document positions >= P, within the same sliding-window protocol. With
    one window over the whole document, it is the per-token cross-entropy of the positions >= P of one forward."""
    torch.manual_seed(0)
    docs = [torch.randint(0, 97, (60,)), torch.randint(0, 97, (45,))]
    rec = P.evaluate(tiny_llama, docs, ["a", "b"], window=64, stride=8, n_boot=10, past=40)
    with torch.no_grad():
        want = []
        for d in docs:
            logits = tiny_llama(d[None]).logits[0, :-1].double()
            ce = F.cross_entropy(logits, d[1:], reduction="none")  # ce[i]: the token at position i + 1
            want.append((ce[39:].sum().item(), len(ce[39:])))
    for x, w in zip(rec["docs"], want):
        assert (x["nll_sum_past"], x["n_scored_past"]) == pytest.approx(w, rel=1e-6)
    assert rec["past"]["n_scored_tokens"] == 20 + 5
    assert rec["past"]["perplexity"] == pytest.approx(math.exp(sum(w[0] for w in want) / 25), rel=1e-6)
    # with sliding windows: the past sums are part of the overall ones, and P = 1 gives the overall perplexity
    rec = P.evaluate(tiny_llama, docs, ["a", "b"], window=16, stride=8, n_boot=10, past=1)
    assert rec["past"]["perplexity"] == pytest.approx(rec["perplexity"], rel=1e-12)
    rec = P.evaluate(tiny_llama, docs, ["a", "b"], window=16, stride=8, n_boot=10, past=100)
    assert rec["past"]["perplexity"] is None


@pytest.mark.parametrize("n,window", [(100, 16), (16, 16), (5, 16)])
def test_the_truncated_protocol_scores_each_documents_first_window_once(n, window):
    """YaRN's protocol (its eval/perplexity.py --truncate): one window of the first W tokens, every token after the
    first predicted from the tokens before it in that window; nothing past W is scored."""
    spans = P.window_spans(n, window, 4, truncate=True)
    assert [(s.begin, s.end, s.n_scored) for s in spans] == [(0, min(n, window), min(n, window) - 1)]


def test_truncated_perplexity_matches_a_direct_forward_of_the_first_window(tiny_llama):
    torch.manual_seed(0)
    docs = [torch.randint(0, 97, (n,)) for n in (40, 23, 9)]
    window = 16
    nll, count = P.sliding_window_nll(tiny_llama, docs, window, 4, truncate=True)
    for d, doc in enumerate(docs):
        x = doc[:window]
        with torch.no_grad():
            logp = F.log_softmax(tiny_llama(x[None]).logits[0].double(), -1)
        want = -sum(logp[i - 1, x[i]].item() for i in range(1, len(x)))
        assert count[d] == len(x) - 1 and nll[d] == pytest.approx(want, rel=1e-6)
    sliding = P.sliding_window_nll(tiny_llama, docs, window, 4)
    assert sliding[1].sum() > count.sum()  # the sliding window scores every token; the truncated one W - 1 per doc


def test_a_caption_names_its_protocol_and_a_table_never_mixes_two():
    from pi_repro.kinds import KINDS

    rec = {"dataset": "pg19", "stride": 32}
    assert KINDS["windows"].note([rec]).startswith("Sliding-window perplexity on pg19 (stride 32); columns:")
    assert KINDS["steps"].note([rec]).startswith("Perplexity on pg19 (stride 32) at each model's")
    trunc = dict(rec, protocol="truncated")
    assert "truncated protocol: one window of each document's first W tokens" in KINDS["windows"].note([trunc])
    assert "truncated protocol" in KINDS["steps"].note([trunc]) and "stride" not in KINDS["steps"].note([trunc])
    with pytest.raises(ValueError, match="mix perplexity protocols"):
        KINDS["windows"].note([rec, trunc])


def test_the_truncated_protocol_is_priced_per_document_and_reaches_the_job():
    """The cost plan prices a truncated evaluation as one window per document; the perplexity job is told the
    protocol, and a config that does not name one keeps the paper's command (nothing of a finished run reruns)."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from pi_repro import config as C, cost, perf, targets

    root = Path(__file__).resolve().parents[1]
    cfg = C.load(root / "config/config.yaml")
    trunc = C.validate({"extends": "config/config.yaml", "perplexity": {"protocol": "truncated"}})
    sh, docs = targets.shape(cfg, "mini"), cfg["datasets"]["proofpile"]["eval"]["num_docs"]
    assert cost.perplexity_flops(trunc, "proofpile", "mini", [128, 256]) == pytest.approx(
        sum(docs * w * perf.flops_per_token(sh, w, False) for w in (128, 256)))
    assert cost.perplexity_flops(cfg, "proofpile", "mini", [128]) > cost.perplexity_flops(trunc, "proofpile", "mini",
                                                                                          [128])
    with pytest.raises(C.ConfigError, match="perplexity.protocol"):
        C.validate({"extends": "config/config.yaml", "perplexity": {"protocol": "truncate"}})

    def commands(overlay):
        path = root / "results" / "protocol-test.yaml"
        path.write_text(yaml.safe_dump(overlay))
        try:
            target = "results/protocol-test/eval/ppl/pg19/mini/base/ppl.json"
            p = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-p", "--configfile", str(path)],
                               cwd=root, capture_output=True, text=True)
        finally:
            path.unlink()
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        return [line for line in p.stdout.splitlines() if "scripts/perplexity.py" in line]

    sliding = commands({"extends": "config/config.yaml", "run": "protocol-test"})
    truncated = commands({"extends": "config/config.yaml", "run": "protocol-test",
                          "perplexity": {"protocol": "truncated"}})
    assert sliding and all("--protocol" not in c for c in sliding)
    assert truncated and all("--protocol truncated" in c for c in truncated)
