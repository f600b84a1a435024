#!/usr/bin/env python3
"""One fine-tuning run of an extension (rule finetune); also a torchrun / deepspeed entry point.

    torchrun --nproc-per-node 8 workflow/scripts/finetune.py --init ... (same arguments)
"""
import argparse
import json

import _common
from pi_repro.finetune import finetune
from pi_repro.launch import train_options
from pi_repro.methods import METHODS


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--init", required=True, help="the step0 checkpoint (extended config, base weights)")
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--hp", type=json.loads, required=True)
    ap.add_argument("--checkpoints", required=True, help="comma-separated steps to export")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("data", nargs="+", help="packed training tokens (train.npy; its index train.idx.npz beside it)")
    a = ap.parse_args()
    steps = [int(s) for s in a.checkpoints.split(",")]
    _common.run_training(lambda: finetune(a.init, a.method, a.ctx, a.base_window, a.hp, steps, a.outdir, a.manifest,
                                          a.data, train_options()), f"{a.method}-{a.ctx}")


if __name__ == "__main__":
    main()
