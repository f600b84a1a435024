#!/usr/bin/env python3
"""RULER of one checkpoint at every length the ruler tables need of it, through lm-evaluation-harness (rule
ruler): per length each task's score and their mean, and every sample (prompt, target, greedy output, score)."""
import argparse
import time
from pathlib import Path

import _common
from pi_repro import modeling, ruler
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", required=True, help="comma-separated RULER tasks (pi_repro.ruler.SYNTHETIC)")
    ap.add_argument("--lengths", required=True, help="comma-separated prompt lengths (tokens)")
    ap.add_argument("--samples", type=int, required=True, help="prompts per task and length")
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=1)
    a = _common.eval_args(ap).parse_args()
    model_dir = Path(a.model)
    model, facts = modeling.load_for_eval(model_dir)
    factor = modeling.check_scaling(model.config, a.coords["method"], a.coords["ctx"], a.base_window)
    tok = modeling.load_tokenizer(model_dir)
    tasks, lengths = a.tasks.split(","), [int(x) for x in a.lengths.split(",")]
    t = time.time()
    rec = ruler.evaluate(model, tok, model_dir, tasks, lengths, a.samples, a.seed, a.batch_size)
    for length, r in rec["lengths"].items():
        print(f"{model_dir} length {length}: mean {r['mean']:.1f}; "
              + ", ".join(f"{k} {v['score']:.1f}" for k, v in r["tasks"].items()))
    write_json(a.out, dict(**a.coords, **facts, scale_factor=factor, seconds=round(time.time() - t, 2),
                           protocol={"tasks": tasks, "samples": a.samples, "seed": a.seed, "decoding": "greedy",
                                     "metric": "string_match_all", "answer_room": ruler.RULER_ANSWER},
                           **rec))


if __name__ == "__main__":
    main()
