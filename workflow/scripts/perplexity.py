#!/usr/bin/env python3
"""Sliding-window perplexity of one checkpoint at one window (rule perplexity)."""
import argparse
import time
from pathlib import Path

import torch

import _common
from pi_repro import data, modeling, perplexity
from pi_repro.io import sha256_file, write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", required=True)
    ap.add_argument("--windows", required=True, help="comma-separated evaluation windows")
    ap.add_argument("--stride", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=1000)
    a = _common.eval_args(ap).parse_args()
    model_dir = Path(a.model)
    data.check_tokenizer([a.docs], modeling.load_tokenizer(model_dir), model_dir)  # before loading the weights
    model, facts = modeling.load_for_eval(model_dir)
    ids, arrays = data.load_docs(a.docs)
    docs = [torch.from_numpy(x) for x in arrays]
    meta = dict(**a.coords, **facts, docs_file=a.docs, docs_sha256=sha256_file(a.docs), stride=a.stride, windows={})
    for window in (int(w) for w in a.windows.split(",")):
        t = time.time()
        rec = perplexity.evaluate(model, docs, ids, window, a.stride, batch_size=a.batch_size, n_boot=a.bootstrap,
                                  seed=a.seed, progress=True)
        rec["seconds"] = round(time.time() - t, 2)
        meta["windows"][str(window)] = rec
        print(f"{model_dir} w={window}: perplexity {rec['perplexity']:.4f} "
              f"(95% CI {rec['ci95'][0]:.4f}-{rec['ci95'][1]:.4f}, {rec['n_scored_tokens']} tokens, {rec['seconds']} s)")
    write_json(a.out, meta)


if __name__ == "__main__":
    main()
