#!/usr/bin/env python3
"""Perplexity (sliding window, or truncated: --protocol) of one checkpoint at every window a table needs (rule
perplexity); with --shard, one shard of it: the documents of one token-balanced range (rule perplexity_shard);
with --merge, the record merged from the shards' (rule perplexity, for an evaluation split into shards)."""
import argparse
import json
import time
from pathlib import Path

import _common
from pi_repro import perplexity
from pi_repro.io import write_json


def evaluate(a) -> dict:
    import torch

    from pi_repro import data, modeling
    from pi_repro.io import sha256_file

    model_dir = Path(a.model)
    data.check_tokenizer([a.docs], modeling.load_tokenizer(model_dir), model_dir)  # before loading the weights
    model, facts = modeling.load_for_eval(model_dir)
    ids, arrays = data.load_docs(a.docs)
    meta = dict(**a.coords, **facts, docs_file=a.docs, docs_sha256=sha256_file(a.docs), stride=a.stride, windows={})
    truncate = a.protocol == "truncated"
    if truncate:  # a record without the key is the paper's sliding window (every record before the key existed)
        meta["protocol"] = a.protocol
    if a.shard is not None:
        index, of = a.shard
        begin, end = perplexity.shard_ranges([len(x) for x in arrays], of)[index]
        ids, arrays = ids[begin:end], arrays[begin:end]
        meta["shard"] = {"index": index, "of": of, "docs": [begin, end]}
        print(f"shard {index} of {of}: documents {begin}-{end} ({sum(len(x) for x in arrays)} tokens)")
    docs = [torch.from_numpy(x) for x in arrays]
    progress = None
    if a.shard is not None:  # finished documents survive a resubmission (a shard that ran out of time)
        key = {k: meta[k] for k in ("model_sha256", "docs_sha256", "stride", "shard") + (("protocol",) * truncate)}
        progress = perplexity.Progress(a.out + ".progress.jsonl", dict(key, batch_size=a.batch_size, past=a.past))
        if progress.resumed:
            print(f"resumed: {progress.resumed} (window, document) results kept from an earlier attempt")
    for window in (int(w) for w in a.windows.split(",")):
        t = time.time()
        if a.shard is not None:  # the per-document sums only: the merge computes perplexity and interval
            sums = perplexity.resumable_nll(model, docs, ids, window, a.stride, progress, a.batch_size, a.past, True,
                                            truncate)
            rec = {"window": window, "stride": a.stride,
                   "docs": perplexity.doc_records(ids, *(sums if a.past is not None else sums[:2]))}
            if a.past is not None:
                rec["past_position"] = a.past
        else:
            rec = perplexity.evaluate(model, docs, ids, window, a.stride, batch_size=a.batch_size,
                                      n_boot=a.bootstrap, seed=a.seed, progress=True, past=a.past, truncate=truncate)
        rec["seconds"] = round(time.time() - t, 2)
        meta["windows"][str(window)] = rec
        if "perplexity" in rec:
            print(f"{model_dir} w={window}: perplexity {rec['perplexity']:.4f} (95% CI {rec['ci95'][0]:.4f}-"
                  f"{rec['ci95'][1]:.4f}, {rec['n_scored_tokens']} tokens, {rec['seconds']} s)"
                  + (f"; positions >= {a.past}: {rec['past']['perplexity']}" if a.past is not None else ""))
        else:
            print(f"{model_dir} w={window}: {len(ids)} documents scored ({rec['seconds']} s)")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs")
    ap.add_argument("--windows", help="comma-separated evaluation windows")
    ap.add_argument("--stride", type=int)
    ap.add_argument("--protocol", choices=perplexity.PROTOCOLS, default="sliding",
                    help="sliding (the paper's, by --stride) or truncated (one window of each document's first W "
                         "tokens, YaRN's --truncate)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--past", type=int, help="also the perplexity of the tokens at document positions >= PAST")
    ap.add_argument("--shard", type=int, nargs=2, metavar=("INDEX", "OF"), help="evaluate shard INDEX of OF")
    ap.add_argument("--merge", nargs="+", metavar="SHARD_RECORD", help="merge the shards' records (no model)")
    a = _common.eval_args(ap, model_required=False).parse_args()
    if a.merge:
        rec = perplexity.merge_shards([json.loads(Path(f).read_text()) for f in a.merge], a.bootstrap, a.seed)
        for w, r in rec["windows"].items():
            print(f"w={w}: perplexity {r['perplexity']:.4f} over {r['n_docs']} documents of {rec['shards']} shards")
    else:
        missing = [k for k in ("model", "docs", "windows", "stride") if getattr(a, k) is None]
        if missing:
            ap.error("to evaluate: --" + ", --".join(missing))
        rec = evaluate(a)
    write_json(a.out, rec)
    Path(a.out + ".progress.jsonl").unlink(missing_ok=True)  # the record holds it all now


if __name__ == "__main__":
    main()
