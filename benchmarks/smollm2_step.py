#!/usr/bin/env python3
"""Time one training micro-step (forward + backward of one sequence, gradient checkpointing) of a PI extension at
--ctx tokens on this machine, for config/smollm2.yaml's question: does a PI fine-tune of SmolLM2-135M at 16384 fit
in CPU time? A fine-tune step of the paper's recipe is global_batch (64) such micro-steps.

    python benchmarks/smollm2_step.py results/smollm2/models/smollm2/PI-16384/step0 --ctx 16384
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import torch  # noqa: E402

from pi_repro import modeling, perf  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an extension's step 0 (or any checkpoint)")
    ap.add_argument("--ctx", type=int, default=16384)
    ap.add_argument("--global-batch", type=int, default=64)
    a = ap.parse_args()
    model = modeling.load_model(a.model)
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (1, a.ctx), generator=torch.Generator().manual_seed(0))
    t = time.time()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    secs = time.time() - t
    flops = perf.flops_per_token(model.config, a.ctx) * a.ctx * 4 / 3  # the forward is recomputed
    out = {"ctx": a.ctx, "threads": torch.get_num_threads(), "micro_step_seconds": round(secs, 1),
           "step_hours_at_global_batch": round(secs * a.global_batch / 3600, 2), "global_batch": a.global_batch,
           "achieved_gflops": round(flops / secs / 1e9, 1),
           "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
