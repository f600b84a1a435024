"""What each SLURM job of a configuration asks (rules' resources; ``cost.cluster_plan`` prints them): fine-tunes'
ranks, nodes, memory and submissions, evaluation and sealing jobs' GPUs, data jobs, the cluster block's defaults,
and a size's architecture for the memory estimates (pi_repro.memory).
"""
from __future__ import annotations

import math

from . import targets
from .memory import Shape


def resources(cfg: dict, size: str, ext: dict | None = None) -> dict:
    """Cluster resources: the size's, overridden by the extension's (e.g. 128 GPUs for the longer windows)."""
    return {**cfg["sizes"][size].get("resources", {}), **((ext or {}).get("resources", {}))}


CLUSTER_DEFAULTS = {"stop_margin_min": 20, "failure_retries": 2}


def cluster(cfg: dict) -> dict:
    """The config's ``cluster`` block with its defaults (no time limit, no node memory unless given)."""
    return {**CLUSTER_DEFAULTS, **cfg.get("cluster", {})}


def _capped(cfg: dict, minutes: int) -> int:
    limit = cluster(cfg).get("time_limit_min")
    return min(minutes, limit) if limit else minutes


def train_job(cfg: dict, ext: dict) -> dict:
    """What one fine-tune asks of SLURM (rule ``finetune``'s resources; ``cluster_plan`` prints it): ranks,
    whole nodes or not, memory per node, time per submission and how many submissions its runtime needs."""
    r, c = resources(cfg, ext["size"], ext), cluster(cfg)
    nodes, gpus = r.get("train_nodes", 1), r.get("train_gpus_per_node", 0)
    procs = gpus or r.get("train_procs_per_node", 1)
    need, limit = r.get("train_runtime", 60), c.get("time_limit_min")
    usable = limit - c["stop_margin_min"] if limit else None  # training time of one submission
    submissions = math.ceil(need / usable) if usable and need > usable else 1
    full = bool(r.get("train_full_node"))
    return {"nodes": nodes, "gpus_per_node": gpus, "procs_per_node": procs,
            "cpus_per_node": r.get("train_cpus_per_node"),
            "srun": nodes > 1 or r.get("train_launch", "auto") == "srun",
            "exclusive": full, "mem_mb": c.get("node_mem_mb") if full else r.get("train_mem_mb", 16000),
            "runtime": _capped(cfg, need + c["stop_margin_min"]), "runtime_needed": need,
            "submissions": submissions,
            "gpus": nodes * gpus}


def train_ranks(cfg: dict, ext: dict) -> int:
    """Ranks of a training job (train_nodes x GPUs or processes per node): the global batch must split over them."""
    j = train_job(cfg, ext)
    return j["nodes"] * j["procs_per_node"]


def finetune_retries(cfg: dict) -> int | None:
    """Resubmissions the fine-tune rule allows: those the longest fine-tune needs to finish within the time limit,
    plus ``failure_retries``; None (Snakemake's --retries decides) when every fine-tune fits in one job."""
    most = max((train_job(cfg, ext)["submissions"] for ext in targets.trained(cfg)), default=1)
    return most - 1 + cluster(cfg)["failure_retries"] if most > 1 else None


def eval_job(cfg: dict, size: str) -> dict:
    """What one evaluation job of a size asks: GPUs of one node (the model is spread over them)."""
    r = resources(cfg, size)
    return {"gpus": r.get("eval_gpus", 0), "cpus": r.get("eval_cpus"), "mem_mb": r.get("eval_mem_mb", 16000),
            "runtime": _capped(cfg, r.get("eval_runtime", 30))}


def seal_job(cfg: dict, size: str) -> dict:
    """What a job that seals a checkpoint of ``size`` asks (base model, step 0 of an extension): the sha256 of the
    weights and a probe run as the size's evaluations load the model. With evaluation GPUs, the GPUs, CPUs and
    memory of an evaluation job (bf16 on GPUs: on CPU, fp16 ran at 0.66 GFLOP/s per thread here, ~27 h for 33B,
    and 65B in fp32 needs 260 GB) and the data jobs' runtime (the copy of the weights dominates); else a data job
    with the memory the fp32 model needs."""
    e, d = eval_job(cfg, size), data_job(cfg, size)
    if not e["gpus"]:  # on CPU the model is loaded whole in fp32: memory from its shape (4 bytes a parameter + 25%)
        sh = size_shape(cfg, size)  # (None for hub weights without a shape: the data job's memory)
        return dict(d, gpus=0, mem_mb=max(d["mem_mb"], math.ceil(sh.params * 4 * 1.25 / 2**20) if sh else 0))
    return dict(e, runtime=d["runtime"])


# merging the records of a sharded evaluation (perplexity, RULER): seconds on one CPU
MERGE_JOB = {"gpus": 0, "cpus": 1, "mem_mb": 4000, "runtime": 15}


def data_job(cfg: dict, size: str) -> dict:
    """What the CPU jobs of a size ask: tokenization, weight download (and sealing, without evaluation GPUs)."""
    r = resources(cfg, size)
    return {"cpus": r.get("data_cpus", 2), "mem_mb": r.get("data_mem_mb", 8000),
            "runtime": _capped(cfg, r.get("data_runtime", 240))}


def size_shape(cfg: dict, size: str) -> Shape | None:
    """A size's Shape, or None where the config cannot give it yet (hub weights without a shape, a model
    folder not there yet)."""
    try:
        return Shape(targets.shape(cfg, size))
    except (targets.ConfigError, OSError, KeyError):  # hub weights without a shape, a model folder not there yet
        return None
