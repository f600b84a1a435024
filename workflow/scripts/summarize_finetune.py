#!/usr/bin/env python3
"""Fine-tune one checkpoint to summarize (rule summarize_finetune: Table 6), at the checkpoint's own window with its
position scaling kept; also a torchrun / deepspeed entry point (ZeRO-3 as configured)."""
import argparse
import json

import _common
from pi_repro import summarization
from pi_repro.launch import train_options


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--init", required=True, help="the checkpoint to start from (base model or an extension's step)")
    ap.add_argument("--method", required=True, help="its method (None for the base model), to check its scaling")
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--hp", type=json.loads, required=True, help="optimizer and batch (JSON)")
    ap.add_argument("--spec", type=json.loads, required=True, help="the summarization protocol (JSON)")
    ap.add_argument("--corpus", required=True, help="documents with summaries, split train|test (JSON lines)")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--manifest", required=True)
    a = ap.parse_args()
    _common.run_training(lambda: summarization.finetune(a.init, a.corpus, a.spec, a.hp, a.method, a.ctx,
                                                        a.base_window, a.outdir, a.manifest, train_options()),
                        f"summarize {a.init}")


if __name__ == "__main__":
    main()
