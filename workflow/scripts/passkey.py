#!/usr/bin/env python3
"""Passkey retrieval of one checkpoint at every window Table 4 needs of it: k_max, per-k accuracy with its
Wilson interval, and every trial (rule passkey)."""
import argparse
import time
from pathlib import Path

import _common
from pi_repro import modeling, passkey
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", required=True, help="comma-separated windows (prompt + answer length)")
    ap.add_argument("--num-k", type=int, default=32)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--intro", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--batch-size", type=int, default=8)
    a = _common.eval_args(ap).parse_args()
    model_dir = Path(a.model)
    model, facts = modeling.load_for_eval(model_dir)
    tok = modeling.load_tokenizer(model_dir)
    protocol = {"num_k": a.num_k, "trials": a.trials, "threshold": a.threshold, "intro": a.intro, "seed": a.seed,
                "decoding": "greedy"}
    meta = dict(**a.coords, **facts, protocol=protocol, windows={})
    for window in (int(w) for w in a.windows.split(",")):
        t = time.time()
        rec = passkey.evaluate(model, tok, window, a.num_k, a.trials, a.seed, a.intro, a.threshold, a.batch_size,
                               progress=True)
        rec["seconds"] = round(time.time() - t, 2)
        meta["windows"][str(window)] = rec
        acc = " ".join(f"{r['correct']}" for r in rec["per_k"])
        print(f"{model_dir} window {window}: k_max {rec['k_max']} of k up to {rec['k_top']} "
              f"({rec['seconds']} s); correct of {a.trials} per k: {acc}")
    write_json(a.out, meta)


if __name__ == "__main__":
    main()
