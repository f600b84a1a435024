#!/usr/bin/env python3
"""The base model of one size (rule base_model): shipped, hub, or pretrained here at window L."""
import argparse
import json
from pathlib import Path

import _common  # noqa: F401
from pi_repro import fetch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=json.loads, required=True, help="sizes.<size>.base, as JSON")
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("inputs", nargs="*", help="pretrain: the tokenizer directory, then the tokenized corpora")
    a = ap.parse_args()
    if a.spec["source"] == "pretrain":
        from pi_repro.pretrain import pretrain

        tokenizer, *token_files = a.inputs
        out = Path(a.out)
        pretrain(a.spec, token_files, tokenizer, a.window, a.seed, str(out.parent / "_pretrain"), str(out),
                 log_path=str(out.parent / "pretrain-log.jsonl"))
        print(f"pretrained {out}")
    else:
        print(json.dumps(fetch.fetch_model(a.spec, a.out)))


if __name__ == "__main__":
    main()
