#!/usr/bin/env python3
"""RULER of one checkpoint at every length the ruler tables need of it, through lm-evaluation-harness (rule
ruler): per length each task's score and their mean, and every sample (prompt, target, greedy output, score).
With --shard, one shard of it: a contiguous share of every task's prompts at every length (rule ruler_shard);
with --merge, the record merged from the shards' (rule ruler, for a job split into shards)."""
import argparse
import json
import time
from pathlib import Path

import _common
from pi_repro import modeling, ruler
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--merge", nargs="+", metavar="SHARD_RECORD", help="merge the shards' records (no model)")
    ap.add_argument("--tasks", help="comma-separated RULER tasks (pi_repro.ruler: SYNTHETIC, DOWNLOADED)")
    ap.add_argument("--lengths", help="comma-separated prompt lengths (tokens)")
    ap.add_argument("--samples", type=int, help="prompts per task and length")
    ap.add_argument("--base-window", type=int)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--shard", type=int, nargs=2, metavar=("INDEX", "OF"), help="score shard INDEX of OF")
    ap.add_argument("--data", help="the folder of the tasks' pinned downloads (rule ruler_data)")
    ap.add_argument("--sources", type=json.loads, default=None, help="the downloads' url and sha256 (JSON)")
    a = _common.eval_args(ap, model_required=False).parse_args()
    if a.merge:
        rec = ruler.merge_shards([json.loads(Path(f).read_text()) for f in a.merge])
        print(f"merged {rec['shards']} shards: " + "; ".join(f"length {k}: mean {v['mean']:.1f}"
                                                            for k, v in rec["lengths"].items()))
        write_json(a.out, rec)
        return
    need = ("model", "coords", "tasks", "lengths", "samples", "base_window")
    missing = [k for k in need if getattr(a, k) in (None, {})]
    if missing:
        ap.error(f"an evaluation needs --{', --'.join(m.replace('_', '-') for m in missing)}")
    model_dir = Path(a.model)
    model, facts = modeling.load_for_eval(model_dir)
    factor = modeling.check_scaling(model.config, a.coords["method"], a.coords["ctx"], a.base_window)
    tok = modeling.load_tokenizer(model_dir)
    tasks, lengths = a.tasks.split(","), [int(x) for x in a.lengths.split(",")]
    part = tuple(a.shard) if a.shard else None
    t = time.time()
    rec = ruler.evaluate(model, tok, model_dir, tasks, lengths, a.samples, a.seed, a.batch_size, part, a.data,
                         a.sources)
    for length, r in rec["lengths"].items():
        print(f"{model_dir} length {length}: mean {r['mean']:.1f}; "
              + ", ".join(f"{k} {v['score']:.1f}" for k, v in r["tasks"].items()))
    write_json(a.out, dict(**a.coords, **facts, scale_factor=factor, seconds=round(time.time() - t, 2),
                           protocol={"tasks": tasks, "samples": a.samples, "seed": a.seed, "decoding": "greedy",
                                     "metric": "string_match_all", "answer_room": ruler.RULER_ANSWER},
                           **({"shard": {"index": part[0], "of": part[1]}} if part else {}), **rec))


if __name__ == "__main__":
    main()
