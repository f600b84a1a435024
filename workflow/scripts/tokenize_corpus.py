#!/usr/bin/env python3
"""Tokenize a corpus with the model's tokenizer: the training documents stream into a packed token file in bounded
memory (a batch of about --batch-chars characters at a time; rule tokenize); the test documents, which are few,
are held to choose the evaluation documents (rule eval_docs). Two rules, so that a change of the evaluation
documents' choice never rewrites the training tokens (and so retrains nothing)."""
import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import _common  # noqa: F401
from pi_repro import data
from pi_repro.io import atomic_path, write_json
from pi_repro.modeling import load_tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--eval", type=json.loads, default=None, help="the dataset's eval block, as JSON")
    ap.add_argument("--seed", type=int, default=0, help="the seed of the evaluation documents' choice")
    ap.add_argument("--train", help="packed training tokens (.npy)")
    ap.add_argument("--train-index", help="their index (.idx.npz)")
    ap.add_argument("--eval-out", help="the chosen evaluation documents (.npz)")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--batch-chars", type=int, default=1 << 20)
    a = ap.parse_args()
    if not (a.train or a.eval_out):
        raise SystemExit("nothing to write: give --train (and --train-index) and/or --eval-out")
    if a.train and Path(a.train_index or "") != data.index_path(a.train):
        raise SystemExit(f"--train-index must be {data.index_path(a.train)} (readers find it beside {a.train})")
    tok = load_tokenizer(a.tokenizer)
    digest = data.tokenizer_digest(tok)
    test, bar, stats = [], tqdm(desc="tokenize", unit="doc", mininterval=10), {}
    if a.train:  # the training split streams into the packed file; the test split, which is small, is held
        with atomic_path(a.train) as tmp, atomic_path(a.train_index) as tmp_index, \
                data.PackedWriter(tmp, tmp_index, len(tok), digest) as train:
            for batch in data.batches(data.iter_corpus(a.corpus), a.batch_chars):
                train.add(data.encode_docs(tok, [d["text"] for d in batch if d["split"] == "train"]))
                test += [d for d in batch if d["split"] == "test"]
                bar.update(len(batch))
        stats["train"] = train.stats()
    else:
        for doc in data.iter_corpus(a.corpus):
            bar.update(1)
            if doc["split"] == "test":
                test.append(doc)
    bar.close()
    if a.eval_out:
        stats["test"] = write_eval_docs(a, tok, digest, test)
    for split in stats:
        if not stats[split]["documents"]:  # e.g. a training-only corpus (the Pile) or an evaluation-only one (PG19)
            print(f"{a.corpus}: no {split} documents")
        print(split, stats[split])
    stats["vocab_size"] = len(tok)
    write_json(a.stats, stats)


def write_eval_docs(a, tok, digest: str, test: list[dict]) -> dict:
    """The evaluation documents the dataset's eval block chooses (seeded) from its test split, tokenized."""
    if (a.eval or {}).get("join") == "book":
        test = data.join_books(test)
    ids, arrays = [d["id"] for d in test], data.encode_docs(tok, [d["text"] for d in test])
    if a.eval and test:
        ev = a.eval
        ids, arrays = data.select_eval_docs(ids, arrays, ev["style"], a.seed, ev.get("num_docs"), ev.get("doc_tokens"))
    with atomic_path(a.eval_out) as tmp:
        data.save_docs(tmp, ids, arrays, len(tok), digest)
    lens = np.array([len(x) for x in arrays] or [0])
    return {"documents": len(ids), "tokens": int(lens.sum()), "min_doc_tokens": int(lens.min()),
            "max_doc_tokens": int(lens.max())}


if __name__ == "__main__":
    main()
