#!/usr/bin/env python3
"""One fine-tuning run of an extension (rule finetune); also a torchrun / deepspeed entry point.

    torchrun --nproc-per-node 8 workflow/scripts/finetune.py --init ... (same arguments)
"""
import argparse
import json
import os
import sys

import _common
from pi_repro.finetune import StoppedBeforeTimeLimit, finetune
from pi_repro.train import NonFiniteLoss

# exit status of a run that stopped before its time limit with its state saved (EX_TEMPFAIL: try again)
EXIT_RESUBMIT = 75


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--init", required=True, help="the step0 checkpoint (extended config, base weights)")
    ap.add_argument("--method", required=True, choices=["PI", "FT", "CT"])
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--hp", type=json.loads, required=True)
    ap.add_argument("--checkpoints", required=True, help="comma-separated steps to export")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("data", nargs="+", help="tokenized training data (train.npz)")
    a = ap.parse_args()
    steps = [int(s) for s in a.checkpoints.split(",")]
    try:
        finetune(a.init, a.method, a.ctx, a.base_window, a.hp, steps, a.outdir, a.manifest, a.data)
    except StoppedBeforeTimeLimit as e:
        print(e, flush=True)
        sys.exit(EXIT_RESUBMIT)
    except NonFiniteLoss as e:
        print(f"{a.method}-{a.ctx}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        close_process_group()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A rank of a finished run leaves without the interpreter's teardown, where C++ destructors of threads
        # the libraries left running can abort it (SIGABRT seen in CI after the work was done) and fail the job.
        _common.finish_now()  # the provenance record (rank 0), as at a normal exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def close_process_group():
    """Tear the process group down before the interpreter exits: a rank left to exit with it alive can abort in
    its C++ destructors ("terminate called without an active exception", SIGABRT seen under torchrun + gloo),
    which fails the job after its work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
