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
import time

MODES = ("auto", "python", "torchrun", "srun")
STOP_AT_ENV = "PI_REPRO_STOP_AT"  # Unix time at which a training job saves its state and exits (time limit)
# targets.train_options (tracking, resume state) as JSON: how a training job runs, never what it computes, so they
# reach the ranks through the launcher's untracked arguments, not the rule's command (which Snakemake compares)
OPTIONS_ENV = "PI_REPRO_TRAIN_OPTIONS"


def train_options() -> dict:
    """The training options the launcher handed this process (``OPTIONS_ENV``); none outside it."""
    import json
    import os

    return json.loads(os.environ.get(OPTIONS_ENV) or "{}")


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _job_id(env) -> str | None:
    return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")


def allocation_nodelist(env=os.environ, run=_run) -> str:
    """The node list of the SLURM allocation this process runs in. Snakemake's SLURM executor starts an ``mpi``
    job's command with every ``SLURM_*`` variable removed except the job id (jobstep plugin: "Keep only
    allocation identity-related SLURM vars"), so the list is asked from SLURM by job id when it is not in the
    environment."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if nodelist:
        return nodelist
    job = _job_id(env)
    if not job:
        raise RuntimeError("a multi-node launch needs a SLURM allocation (neither SLURM_JOB_NODELIST nor "
                           "SLURM_JOB_ID is set)")
    nodelist = run(["squeue", "-h", "-j", job, "-o", "%N"])
    if not nodelist or nodelist == "(null)":
        raise RuntimeError(f"SLURM job {job} has no nodes allocated (squeue -j {job} -o %N printed {nodelist!r})")
    return nodelist


def head_node(env=os.environ, run=_run) -> str:
    """The first host of the SLURM allocation (the torchrun rendezvous point)."""
    return run(["scontrol", "show", "hostnames", allocation_nodelist(env, run)]).split()[0]


def parse_time_left(text: str) -> int | None:
    """Seconds in SLURM's time format ``[days-]hours:minutes:seconds`` / ``minutes:seconds`` (squeue %L); None
    for a job without a limit."""
    text = text.strip()
    if not text or text in ("UNLIMITED", "NOT_SET", "INVALID"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return ((int(days) if days else 0) * 24 + h) * 3600 + m * 60 + s


def stop_time(margin_s: float, env=os.environ, run=_run, now: float | None = None) -> float | None:
    """When a training job of this SLURM allocation must stop (save its state and exit): ``margin_s`` before
    the job's time limit, as a Unix time. None outside SLURM or for a job without a time limit."""
    job = _job_id(env)
    if not job:
        return None
    left = parse_time_left(run(["squeue", "-h", "-j", job, "-o", "%L"]))
    if left is None:
        return None
    return (time.time() if now is None else now) + left - margin_s


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
    job = _job_id(env)
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
