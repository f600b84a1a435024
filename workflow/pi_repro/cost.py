"""What a configuration costs before it is launched (rule `plan`): per rule, its jobs, the GPUs each asks and the
estimated GPU-hours, from model FLOPs per token (pi_repro.perf) × the tokens each job processes, at an assumed
model-FLOP utilisation of the GPU's peak stated in the config's ``cost`` block.

Tokens per job: a fine-tune, steps × global batch × its sequence length (L for CT), × 4/3 with gradient
checkpointing (the forward is recomputed); a summarization fine-tune, epochs × training documents × its window
(an upper bound: every example filling the window); a perplexity job, per window W, the documents' tokens / stride
windows of W tokens (forward only); a passkey job, per window, num_k × trials prompts of W tokens; a summary
generation job, per test document, one prompt of W tokens and max_new_tokens decoding steps at W; a benchmark job,
``cost.benchmark_tokens``. Forward passes are a third of a training step's FLOPs and run at ``eval_mfu``.

Wall time: a fine-tune's ranks work in parallel (wall = GPU-hours / GPUs); an evaluation spread over several GPUs
(``device_map``: 33B on 2, 65B on 4) runs its layers on one GPU at a time, so its wall time is that of one GPU
doing all the work and its GPU-hours are that times the GPUs it holds (before, both were divided by the GPUs:
33B/65B evaluations were planned 2-4x too short and sharded too little).
"""
from __future__ import annotations

import json
import math
import sys
from types import SimpleNamespace

from . import config as C
from .tasks import TASKS

DEFAULTS = {"gpu": "A100 80GB, bf16", "gpu_peak_tflops": 312.0, "mfu": 0.4, "eval_mfu": 0.25,
            "benchmark_tokens": 5.0e6, "datasets": {}}


def settings(cfg: dict) -> dict:
    return {**DEFAULTS, **cfg.get("cost", {})}


def shape(cfg: dict, size: str) -> SimpleNamespace:
    """A size's architecture, as perf.flops_per_token reads it: the config's ``sizes.<size>.shape`` (hub weights),
    the ``arch`` it is pretrained with, or the shipped checkpoint's config.json."""
    s = cfg["sizes"][size]
    if "shape" in s:
        a = s["shape"]
    elif s["base"]["source"] == "pretrain":
        a = dict(s["base"]["arch"], vocab_size=s["base"]["vocab_size"])
    elif s["base"]["source"] == "local":
        j = json.loads((C.ROOT / s["base"]["path"] / "config.json").read_text())
        a = {"hidden_size": j["hidden_size"], "intermediate_size": j["intermediate_size"],
             "num_layers": j["num_hidden_layers"], "num_heads": j["num_attention_heads"],
             "num_kv_heads": j.get("num_key_value_heads"), "vocab_size": j["vocab_size"]}
    else:
        raise C.ConfigError(f"config error at sizes.{size}.shape: the plan needs the architecture of hub weights "
                            "(hidden_size, intermediate_size, num_layers, num_heads, vocab_size)")
    return SimpleNamespace(hidden_size=a["hidden_size"], intermediate_size=a["intermediate_size"],
                           num_hidden_layers=a["num_layers"], num_attention_heads=a["num_heads"],
                           num_key_value_heads=a.get("num_kv_heads") or a["num_heads"], head_dim=None,
                           vocab_size=a["vocab_size"])


def eval_tokens(cfg: dict, dataset: str) -> float | None:
    """Tokens of a dataset's evaluation documents: num_docs × doc_tokens (proof-pile style), or the cost block's
    estimate (``cost.datasets.<name>.eval_tokens``: whole books, PG19 style)."""
    ev = cfg["datasets"][dataset].get("eval") or {}
    if ev.get("doc_tokens") and ev.get("num_docs"):
        return float(ev["num_docs"] * ev["doc_tokens"])
    return settings(cfg)["datasets"].get(dataset, {}).get("eval_tokens")


def train_flops(hp: dict, tokens: float, sh, seq_len: int) -> float:
    """FLOPs of training on ``tokens`` tokens at ``seq_len``; gradient checkpointing recomputes the forward (x 4/3)."""
    from . import perf

    return tokens * perf.flops_per_token(sh, seq_len) * (4 / 3 if hp.get("gradient_checkpointing") else 1)


def _gpu_hours(flops: float, mfu: float, s: dict) -> float:
    return flops / (mfu * s["gpu_peak_tflops"] * 1e12) / 3600


def eval_jobs(cfg: dict) -> tuple[dict, dict]:
    """({(task, dataset, size, model): {"windows", "tables"}} of every evaluation job the tables need,
    {(size, extension): tables that read one of its trained steps})."""
    jobs, needs = {}, {}
    for t in cfg["tables"]:
        for task, ds, size, model, window in C.table_cells(cfg, t):
            j = jobs.setdefault((task, ds, size, model), {"windows": set(), "tables": set()})
            j["windows"].add(window)
            j["tables"].add(t)
            if model != "base" and (model.split("/")[1] != "step0" or task == "rouge"):
                needs.setdefault((size, model.split("/")[0]), set()).add(t)
    return jobs, needs


def perplexity_flops(cfg: dict, dataset: str, size: str, windows) -> float | None:
    """FLOPs of one model's perplexity evaluation on ``dataset`` at ``windows`` (None without the dataset's size)."""
    from . import perf

    toks, stride, sh = eval_tokens(cfg, dataset), cfg["perplexity"]["stride"], shape(cfg, size)
    return None if toks is None else sum(toks / stride * w * perf.flops_per_token(sh, w, False) for w in windows)


def perplexity_shards(cfg: dict, jobs: dict | None = None) -> dict[tuple[str, str, str], int]:
    """Shards of every job of a task evaluated in shards (perplexity), by (dataset, size, model):
    ``perplexity.shards``; or, with ``perplexity.shard_hours``, the job's estimated wall-clock hours over
    shard_hours, rounded up (1 without an estimate); at most the dataset's evaluation documents (``eval.num_docs``
    or ``cost.datasets.<name>.eval_docs``)."""
    ppl, s = cfg["perplexity"], settings(cfg)
    out = {}
    for (task, ds, size, model), j in (jobs if jobs is not None else eval_jobs(cfg)[0]).items():
        if not TASKS[task].sharded:
            continue
        n = ppl.get("shards", 1)
        if "shard_hours" in ppl:
            flops = perplexity_flops(cfg, ds, size, sorted(j["windows"]))
            wall = 0 if flops is None else _gpu_hours(flops, s["eval_mfu"], s)  # one GPU at a time (module doc)
            n = max(1, math.ceil(wall / ppl["shard_hours"]))
        docs = (cfg["datasets"][ds].get("eval") or {}).get("num_docs") or s["datasets"].get(ds, {}).get("eval_docs")
        out[(ds, size, model)] = min(n, docs) if docs else n
    return out


def plan(cfg: dict) -> list[dict]:
    """One row per GPU job of the configuration: rule, what, GPUs per job, estimated GPU-hours and wall hours
    (None where the config lacks what the estimate needs, with the reason), and the tables that need it."""
    from . import memory

    s = settings(cfg)
    L = cfg["base_window"]
    rows = []

    def add(rule, what, gpus, flops, mfu, tables, missing=None, peak=None, parallel=False):
        one = None if flops is None else _gpu_hours(flops, mfu, s)  # all the work on one GPU
        gh = None if one is None else one if parallel else one * max(gpus, 1)  # GPU-hours held (module doc)
        rows.append({"rule": rule, "what": what, "gpus_per_job": gpus, "gpu_hours": gh,
                     "wall_hours": None if one is None else one / max(gpus, 1) if parallel else one,
                     "peak_gb": None if peak is None else peak["bytes"] / memory.GIB,  # pi_repro/memory.py
                     "tables": sorted(tables), "note": missing or ""})

    jobs, needs = eval_jobs(cfg)
    for ext in C.trained(cfg):
        hp = C.train_hparams(cfg, ext)
        seq = L if ext["method"] == "CT" else ext["ctx"]
        tokens = hp["steps"] * hp["global_batch"] * ext["ctx"]
        add("finetune", f"{ext['size']} {C.extension_name(ext)}", C.train_job(cfg, ext)["gpus"],
            train_flops(hp, tokens, shape(cfg, ext["size"]), seq), s["mfu"],
            needs.get((ext["size"], C.extension_name(ext)), set()), peak=memory.train_estimate(cfg, ext), parallel=True)
    for job, j in jobs.items():  # each evaluation job, priced by its task (pi_repro.tasks)
        size, windows = job[2], sorted(j["windows"])
        gpus, peak = C.eval_job(cfg, size)["gpus"], memory.eval_estimate(cfg, job[0], size, windows)

        def task_add(rule, what, flops, mfu, missing=None, peak=peak, train=False, job=job, j=j, gpus=gpus):
            g = C.train_job(cfg, C.model_extension(cfg, job[2], job[3]))["gpus"] if train else gpus
            add(rule, what, g, flops, s[mfu], j["tables"], missing, peak, parallel=train)

        TASKS[job[0]].plan(cfg, job, windows, task_add, toolbox())
    return rows


def toolbox() -> SimpleNamespace:
    """What a task's pricing (pi_repro.tasks) computes with: handed to it, so the registry imports none of these."""
    from . import memory, perf
    from .summarization import protocol

    return SimpleNamespace(C=C, cost=sys.modules[__name__], memory=memory, perf=perf, summarization_protocol=protocol)


def per_target(cfg: dict, rows: list[dict]) -> list[dict]:
    """What `snakemake all` and each `snakemake <table>` cost: the jobs each needs (a fine-tune counts for every
    table that reads one of its trained steps)."""
    out = [{"target": "all", "jobs": len(rows), "gpu_hours": sum(r["gpu_hours"] or 0 for r in rows)}]
    for t in cfg["tables"]:
        mine = [r for r in rows if t in r["tables"]]
        out.append({"target": t, "jobs": len(mine), "gpu_hours": sum(r["gpu_hours"] or 0 for r in mine)})
    return out


def by_rule(rows: list[dict]) -> list[dict]:
    """The plan summed per rule (jobs, GPU-hours), in the order rules first appear."""
    out = {}
    for r in rows:
        o = out.setdefault(r["rule"], {"rule": r["rule"], "jobs": 0, "gpus_per_job": set(), "gpu_hours": 0.0,
                                       "unpriced": 0, "peak_gb": None})
        o["jobs"] += 1
        if r.get("peak_gb") is not None:  # the rule's largest estimated peak memory per GPU
            o["peak_gb"] = max(o["peak_gb"] or 0.0, r["peak_gb"])
        o["gpus_per_job"].add(r["gpus_per_job"])
        if r["gpu_hours"] is None:
            o["unpriced"] += 1
        else:
            o["gpu_hours"] += r["gpu_hours"]
    for o in out.values():
        o["gpus_per_job"] = ", ".join(str(g) for g in sorted(o["gpus_per_job"]))
    return list(out.values())


def _weight_bytes(cfg: dict, size: str) -> int:
    """Bytes per parameter of a size's base weights: 2 (hub LLaMA weights, fp16/bf16), else as stored here (fp32)."""
    base = cfg["sizes"][size]["base"]
    if base["source"] == "local":
        dtype = json.loads((C.ROOT / base["path"] / "config.json").read_text()).get("dtype", "float32")
        return 2 if dtype in ("bfloat16", "float16") else 4
    return 2 if base["source"] == "hub" else 4


# a ZeRO-3 resume state per parameter: bf16 weights (2) + fp32 master weights (4) + Adam's m and v (8); fp32
# training without DeepSpeed: weights (4) + m and v (8). The Trainer keeps one (save_total_limit 1) but writes the
# next before it deletes the last: two at the moment of a save.
RESUME_BYTES = {True: 14, False: 12}


def disk(cfg: dict) -> list[dict]:
    """Disk each rule's jobs leave (``kept``: weights, exports, token files) and hold while they run (``resume``:
    the fine-tunes' resume state, deleted once the exports are verified unless ``train.keep_resume_state``; two of
    them at a save), in bytes, one row per rule. Downloaded corpora (their size is the hub's) are not counted."""
    import numpy as np

    from .memory import Shape

    keep = C.train_options(cfg)["keep_resume_state"]
    trained = C.trained(cfg)
    rows = {}

    def add(rule, kept=0, resume=0):
        r = rows.setdefault(rule, {"rule": rule, "jobs": 0, "kept": 0, "resume": 0, "resume_per_job": 0})
        r["jobs"] += 1
        r["kept"] += kept + (resume if keep else 0)
        r["resume"] += resume
        r["resume_per_job"] = max(r["resume_per_job"], 2 * resume)

    for size in cfg["sizes"]:
        w = Shape(shape(cfg, size)).params * _weight_bytes(cfg, size)
        if cfg["sizes"][size]["base"]["source"] == "hub":
            add("download_model", w)
        add("base_model", w)  # a hard link of the download's files where the file system allows (then 0 more)
    for ext in cfg["extensions"]:
        size = ext["size"]
        n = Shape(shape(cfg, size)).params
        add("init_extension", n * _weight_bytes(cfg, size))  # step 0: a copy of the base weights
        if ext not in trained:  # step 0 only: no fine-tune
            continue
        hp = C.train_hparams(cfg, ext)
        ds = bool(hp.get("deepspeed"))
        exports = sum(1 for c in ext["checkpoints"] if c > 0)
        add("finetune", exports * n * (2 if hp.get("bf16") else 4), n * RESUME_BYTES[ds])
    for (task, _, size, model), _ in eval_jobs(cfg)[0].items():
        if task == "rouge":
            hp = C.summarization_hparams(cfg, size, model)
            n = Shape(shape(cfg, size)).params
            add("summarize_finetune", n * (2 if hp.get("bf16") else 4), n * RESUME_BYTES[bool(hp.get("deepspeed"))])
    for tok in C.tokenizers(cfg):
        vocab = shape(cfg, C.tokenizer_size(cfg, tok)).vocab_size
        item = np.dtype(np.uint16 if vocab <= 65536 else np.uint32).itemsize
        sizes = {s for s in cfg["sizes"] if C.tokenizer_name(cfg, s) == tok}
        datasets = {d for ext in cfg["extensions"] if ext["size"] in sizes
                    for d in ext.get("data", cfg["finetune_data"])}
        for ds in datasets:
            add("tokenize", C.fetch_train_tokens(cfg, ds) * item)
    return list(rows.values())


def _size(b: float) -> str:
    return f"{b / 1e12:,.2f} TB" if b >= 1e12 else f"{b / 1e9:,.1f} GB" if b >= 1e9 else f"{b / 1e6:,.1f} MB"


def render_disk(cfg: dict) -> str:
    """The disk plan as Markdown (GB = 10^9 bytes)."""
    import pandas as pd

    rows = disk(cfg)
    kept = sum(r["kept"] for r in rows)
    held = max((r["resume_per_job"] for r in rows), default=0)
    keep = C.train_options(cfg)["keep_resume_state"]
    table = pd.DataFrame([{"Rule": r["rule"], "Jobs": r["jobs"], "Kept": _size(r["kept"]), "Resume state, per job "
                           "at a save": _size(r["resume_per_job"]) if r["resume_per_job"] else "-"} for r in rows])
    return (f"Disk: **{_size(kept)}** kept (weights, exports, token files; not the downloaded corpora), plus the "
            f"resume state of each running fine-tune (at most {_size(held)} for one job, at the moment of a save), "
            + ("kept after each run (`train.keep_resume_state`) and counted in the total"
               if keep else f"deleted once its exports are verified ({_size(sum(r['resume'] for r in rows))} more "
                            "if all were kept: `train.keep_resume_state`)")
            + ".\n\n" + table.to_markdown(index=False) + "\n")


def render(cfg: dict, jobs: bool = True) -> str:
    """The plan as Markdown: per target, per rule, then (``jobs``) per job, with the assumptions."""
    import pandas as pd

    s = settings(cfg)
    rows = plan(cfg)
    total = sum(r["gpu_hours"] or 0 for r in rows)
    targets = pd.DataFrame(per_target(cfg, rows)).rename(columns={"target": "Target", "jobs": "GPU jobs",
                                                                  "gpu_hours": "GPU-hours (est.)"})
    summary = pd.DataFrame(by_rule(rows)).rename(columns={"rule": "Rule", "jobs": "Jobs",
                                                          "gpus_per_job": "GPUs per job",
                                                          "gpu_hours": "GPU-hours (est.)", "unpriced": "Not priced",
                                                          "peak_gb": "Peak GB/GPU (est.)"})
    detail = pd.DataFrame(rows).rename(columns={"rule": "Rule", "what": "Job", "gpus_per_job": "GPUs",
                                                "gpu_hours": "GPU-hours", "wall_hours": "Wall hours", "note": "Note",
                                                "peak_gb": "Peak GB/GPU (est.)"})
    detail["tables"] = [", ".join(t) for t in detail["tables"]]
    detail = detail.rename(columns={"tables": "For"})
    return (f"Cost of config `{cfg['run']}`: estimated **{total:,.0f} GPU-hours** on {s['gpu']} "
            f"({s['gpu_peak_tflops']:g} TFLOP/s peak) at {s['mfu']:.0%} MFU for training and {s['eval_mfu']:.0%} "
            "for evaluation (the config's `cost` block); model FLOPs per token 6 N + 12 n_layers T d (training), a "
            "third of it forward (pi_repro.perf); tokens per job as in pi_repro/cost.py. CPU jobs (downloads, "
            "tokenization, tables, scoring) are not counted. Peak GB/GPU: each job's estimated peak memory per GPU "
            "(GiB; pi_repro/memory.py: weights, optimizer state, activations, logits); validation refuses a GPU job "
            f"whose estimate exceeds {cfg.get('cost', {}).get('gpu_memory_gb', 80):g} (`cost.gpu_memory_gb`)."
            "\n\nPer target:\n\n"
            + targets.to_markdown(index=False, floatfmt=",.1f") + "\n\nPer rule:\n\n"
            + summary.to_markdown(index=False, floatfmt=",.1f") + "\n\n" + render_disk(cfg)
            + ("\nPer job:\n\n" + detail.to_markdown(index=False, floatfmt=",.1f") + "\n" if jobs else ""))
