#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of a base model pretrained here (rule train_tokenizer)."""
import argparse

import _common  # noqa: F401
from pi_repro import data
from pi_repro.io import atomic_path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocab-size", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("corpora", nargs="+")
    a = ap.parse_args()
    texts = [d["text"] for c in a.corpora for d in data.read_corpus(c) if d["split"] == "train"]
    with atomic_path(a.out) as tmp:
        tmp.mkdir()
        data.train_tokenizer(texts, a.vocab_size, tmp)
    print(f"trained a {a.vocab_size}-token BPE on {len(texts)} training documents")


if __name__ == "__main__":
    main()
