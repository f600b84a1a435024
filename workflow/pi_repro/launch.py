"""How a training job starts its processes: one Python process, torchrun on one node, or srun + torchrun across
the nodes of a SLURM allocation (one launcher per node, rendezvous at the first node).

The paper fine-tuned on 32-128 A100s; ``config/paper.yaml`` gives each extension ``train_nodes`` x
``train_gpus_per_node``. Snakemake's slurm executor allocates the nodes (rule ``finetune``'s resources) and runs
the rule once, on the first node; the command built here then starts the ranks.
"""
from __future__ import annotations

import os
import subprocess
import sys

MODES = ("auto", "python", "torchrun", "srun")


def head_node(env=os.environ) -> str:
    """The first host of the SLURM allocation (the torchrun rendezvous point)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise RuntimeError("a multi-node launch needs a SLURM allocation (SLURM_JOB_NODELIST is not set)")
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True,
                           text=True).stdout.split()
    return hosts[0]


def launch_command(argv: list[str], nodes: int = 1, procs_per_node: int = 1, gpus_per_node: int = 0,
                   cpus_per_node: int | None = None, mode: str = "auto", env=os.environ, head: str | None = None,
                   python: str = sys.executable) -> list[str]:
    """The command that runs the Python program ``argv`` (script + arguments) on ``nodes`` x ``procs_per_node``
    ranks. ``mode=auto``: srun + torchrun if nodes > 1, torchrun if one node with several ranks, else plain."""
    if mode not in MODES:
        raise ValueError(f"unknown launch mode {mode!r}; expected one of {MODES}")
    if nodes < 1 or procs_per_node < 1:
        raise ValueError(f"nodes ({nodes}) and processes per node ({procs_per_node}) must be at least 1")
    if mode == "auto":
        mode = "srun" if nodes > 1 else ("torchrun" if procs_per_node > 1 else "python")
    if mode == "python":
        if nodes > 1 or procs_per_node > 1:
            raise ValueError(f"mode python runs one process, not {nodes} x {procs_per_node}")
        return [python, "-u", *argv]
    torchrun = [python, "-m", "torch.distributed.run", f"--nproc-per-node={procs_per_node}"]
    if mode == "torchrun":
        if nodes > 1:
            raise ValueError("torchrun alone starts one node; use mode srun for several nodes")
        return [*torchrun, "--standalone", "--nnodes=1", *argv]
    job = env.get("SLURM_JOB_ID")
    if not job:
        raise RuntimeError("a multi-node launch needs a SLURM allocation (SLURM_JOB_ID is not set)")
    head = head or head_node(env)
    port = 29500 + int(job) % 2000
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if cpus_per_node:
        srun.append(f"--cpus-per-task={cpus_per_node}")
    if gpus_per_node:
        srun.append(f"--gpus-per-node={gpus_per_node}")
    return [*srun, *torchrun, f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={head}:{port}",
            f"--rdzv-id=pi-{job}", *argv]
