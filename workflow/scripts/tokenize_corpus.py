#!/usr/bin/env python3
"""Tokenize a corpus with the model's tokenizer: packed training tokens + chosen eval documents (rule tokenize)."""
import argparse
import json

import numpy as np

import _common  # noqa: F401
from pi_repro import data
from pi_repro.io import atomic_path, write_json
from pi_repro.modeling import load_tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--eval", type=json.loads, required=True, help="the dataset's eval block, as JSON")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval-out", required=True)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()
    tok = load_tokenizer(a.tokenizer)
    docs = data.read_corpus(a.corpus)
    stats = {}
    for split, out in (("train", a.train), ("test", a.eval_out)):
        sel = [d for d in docs if d["split"] == split]
        if not sel:  # e.g. a training-only corpus (the Pile) or an evaluation-only one (PG19 test)
            print(f"{a.corpus}: no {split} documents")
        arrays = data.encode_docs(tok, [d["text"] for d in sel])
        ids = [d["id"] for d in sel]
        if split == "test" and a.eval and sel:
            ev = a.eval
            ids, arrays = data.select_eval_docs(ids, arrays, ev["style"], a.seed, ev.get("num_docs"), ev.get("doc_tokens"))
        with atomic_path(out) as tmp:
            data.save_docs(tmp, ids, arrays, len(tok), data.tokenizer_digest(tok))
        lens = np.array([len(x) for x in arrays] or [0])
        stats[split] = {"documents": len(ids), "tokens": int(lens.sum()), "min_doc_tokens": int(lens.min()),
                        "max_doc_tokens": int(lens.max())}
        print(split, stats[split])
    stats["vocab_size"] = len(tok)
    write_json(a.stats, stats)


if __name__ == "__main__":
    main()
