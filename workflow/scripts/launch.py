#!/usr/bin/env python3
"""Start a training program on the ranks a job was given (rule finetune):

    launch.py --nodes 4 --gpus-per-node 8 -- workflow/scripts/finetune.py --init ...

one process (CPU), torchrun on one node, or srun + torchrun on every node of the SLURM allocation.

With ``--stop-margin-min M`` inside a SLURM job that has a time limit, the program is told (environment variable
``PI_REPRO_STOP_AT``, a Unix time) to save its state and exit M minutes before the limit; the next submission of
the job resumes from that state. With ``--options JSON`` (targets.train_options), the program reads them from
``PI_REPRO_TRAIN_OPTIONS``.
"""
import argparse
import os
import shlex
import time

import _common  # noqa: F401
from pi_repro.launch import MODES, OPTIONS_ENV, STOP_AT_ENV, launch_command, stop_time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus-per-node", type=int, default=0)
    ap.add_argument("--procs-per-node", type=int, default=0, help="ranks per node (default: one per GPU, else 1)")
    ap.add_argument("--cpus-per-node", type=int, default=None)
    ap.add_argument("--mode", choices=MODES, default="auto")
    ap.add_argument("--stop-margin-min", type=float, default=None,
                    help="stop this long before the SLURM job's time limit (state saved; resubmit to continue)")
    ap.add_argument("--options", help="the training options (JSON), handed to the program in PI_REPRO_TRAIN_OPTIONS")
    ap.add_argument("program", nargs=argparse.REMAINDER, help="-- script.py [arguments]")
    a = ap.parse_args()
    program = a.program[1:] if a.program[:1] == ["--"] else a.program
    if not program:
        ap.error("no program to launch (give it after --)")
    procs = a.procs_per_node or max(1, a.gpus_per_node)
    cmd = launch_command(program, a.nodes, procs, a.gpus_per_node, a.cpus_per_node, a.mode)
    print("launch:", shlex.join(cmd), flush=True)
    if a.stop_margin_min is not None:
        stop = stop_time(a.stop_margin_min * 60)
        if stop is not None:
            os.environ[STOP_AT_ENV] = f"{stop:.0f}"
            print(f"launch: stop at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stop))}"
                  f" ({a.stop_margin_min:g} min before the job's time limit)", flush=True)
    if a.options:
        os.environ[OPTIONS_ENV] = a.options
    _common.hand_over()
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
