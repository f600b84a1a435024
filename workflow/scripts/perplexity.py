#!/usr/bin/env python3
"""Sliding-window perplexity of one checkpoint at one window (rule perplexity)."""
import argparse
import json
import time
from pathlib import Path

import torch

import _common  # noqa: F401
from pi_repro import data, modeling, perplexity
from pi_repro.io import sha256_file, write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--docs", required=True)
    ap.add_argument("--windows", required=True, help="comma-separated evaluation windows")
    ap.add_argument("--stride", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coords", type=json.loads, default={},
                    help="the record's coordinates: task, dataset, size, method, ctx, tag, step (JSON)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model_dir = Path(a.model)
    cuda = torch.cuda.is_available()  # on GPUs: bf16, spread over the job's GPUs (33B/65B need several)
    # weights against their record (finetune.json or the checkpoint's own), logits against the probe
    model, check = modeling.load_verified(model_dir, dtype=torch.bfloat16 if cuda else torch.float32,
                                          device_map="auto" if cuda else None)
    ids, arrays = data.load_docs(a.docs)
    docs = [torch.from_numpy(x) for x in arrays]
    meta = dict(**a.coords, model=str(model_dir), model_sha256=check["sha256"], model_record=check["recorded_in"],
                docs_file=a.docs, docs_sha256=sha256_file(a.docs), rope_parameters=model.config.rope_parameters,
                model_window=model.config.max_position_embeddings, probe_error=check["probe_error"],
                stride=a.stride, windows={})
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
