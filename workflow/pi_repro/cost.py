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

from . import kinds, memory, sizing, summarization, targets
from .methods import METHODS
from .targets import fail
from .tasks import TASKS

DEFAULTS = {"gpu": "A100 80GB, bf16", "gpu_peak_tflops": 312.0, "mfu": 0.4, "eval_mfu": 0.25,
            "benchmark_tokens": 5.0e6, "datasets": {}}


def settings(cfg: dict) -> dict:
    return {**DEFAULTS, **cfg.get("cost", {})}


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
        for task, ds, size, model, window in kinds.table_cells(cfg, t):
            j = jobs.setdefault((task, ds, size, model), {"windows": set(), "tables": set()})
            j["windows"].add(window)
            j["tables"].add(t)
            # a trained step, or any step of a task that trains the model further first (summarization)
            if model != "base" and (model.split("/")[1] != "step0" or TASKS[task].train_rule):
                needs.setdefault((size, model.split("/")[0]), set()).add(t)
    return jobs, needs


def perplexity_flops(cfg: dict, dataset: str, size: str, windows) -> float | None:
    """FLOPs of one model's perplexity evaluation on ``dataset`` at ``windows`` (None without the dataset's size)."""
    from . import perf

    sh = targets.shape(cfg, size)
    if targets.perplexity_protocol(cfg) == "truncated":  # one window of W tokens per document
        docs = (cfg["datasets"][dataset].get("eval") or {}).get("num_docs") or \
            settings(cfg)["datasets"].get(dataset, {}).get("eval_docs")
        return None if docs is None else sum(docs * w * perf.flops_per_token(sh, w, False) for w in windows)
    toks, stride = eval_tokens(cfg, dataset), cfg["perplexity"]["stride"]
    return None if toks is None else sum(toks / stride * w * perf.flops_per_token(sh, w, False) for w in windows)


def eval_shards(cfg: dict, jobs: dict | None = None) -> dict[tuple[str, str, str, str], int]:
    """Shards of every job of a task evaluated in shards (``Task.sharded``: perplexity, RULER), by job
    (task, dataset, size, model): the task's block's ``shards``; or, with its ``shard_hours``, the job's estimated
    wall-clock hours over shard_hours, rounded up (1 without an estimate); at most what the job can be split into
    (``Task.max_shards``: perplexity's evaluation documents, RULER's prompts per task and length)."""
    s, x = settings(cfg), toolbox()
    out = {}
    for job, j in (jobs if jobs is not None else eval_jobs(cfg)[0]).items():
        task = TASKS[job[0]]
        if not task.sharded:
            continue
        block = cfg.get(task.sharded, {})
        n = block.get("shards", 1)
        if "shard_hours" in block:
            flops = task.flops(cfg, job, sorted(j["windows"]), x)
            wall = 0 if flops is None else _gpu_hours(flops, s["eval_mfu"], s)  # one GPU at a time (module doc)
            n = max(1, math.ceil(wall / block["shard_hours"]))
        most = task.max_shards(cfg, job, x)
        out[job] = min(n, most) if most else n
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
    for ext in targets.trained(cfg):
        hp = targets.train_hparams(cfg, ext)
        seq = METHODS[ext["method"]].train_window(L, ext["ctx"])
        tokens = hp["steps"] * hp["global_batch"] * ext["ctx"]
        add("finetune", f"{ext['size']} {targets.extension_name(ext)}", sizing.train_job(cfg, ext)["gpus"],
            train_flops(hp, tokens, targets.shape(cfg, ext["size"]), seq), s["mfu"],
            needs.get((ext["size"], targets.extension_name(ext)), set()), peak=train_estimate(cfg, ext), parallel=True)
    for job, j in jobs.items():  # each evaluation job, priced by its task (pi_repro.tasks)
        size, windows = job[2], sorted(j["windows"])
        gpus, peak = sizing.eval_job(cfg, size)["gpus"], eval_estimate(cfg, job[0], size, windows)

        def task_add(rule, what, flops, mfu, missing=None, peak=peak, train=False, job=job, j=j, gpus=gpus):
            g = sizing.train_job(cfg, targets.model_extension(cfg, job[2], job[3]))["gpus"] if train else gpus
            add(rule, what, g, flops, s[mfu], j["tables"], missing, peak, parallel=train)
            rows[-1]["eval"] = None if train else job  # an evaluation job's (task, dataset, size, model)

        TASKS[job[0]].plan(cfg, job, windows, task_add, toolbox())
    return rows


def toolbox() -> SimpleNamespace:
    """What a task's pricing (pi_repro.tasks) computes with: handed to it, so the registry imports none of these."""
    from . import perf

    return SimpleNamespace(targets=targets, cost=sys.modules[__name__], memory=memory, perf=perf,
                           summarization=summarization)


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
        dtype = json.loads((targets.ROOT / base["path"] / "config.json").read_text()).get("dtype", "float32")
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

    keep = targets.train_options(cfg)["keep_resume_state"]
    trained = targets.trained(cfg)
    rows = {}

    def add(rule, kept=0, resume=0):
        r = rows.setdefault(rule, {"rule": rule, "jobs": 0, "kept": 0, "resume": 0, "resume_per_job": 0})
        r["jobs"] += 1
        r["kept"] += kept + (resume if keep else 0)
        r["resume"] += resume
        r["resume_per_job"] = max(r["resume_per_job"], 2 * resume)

    for size in cfg["sizes"]:
        w = Shape(targets.shape(cfg, size)).params * _weight_bytes(cfg, size)
        if cfg["sizes"][size]["base"]["source"] == "hub":
            add("download_model", w)
        add("base_model", w)  # a hard link of the download's files where the file system allows (then 0 more)
    for ext in cfg["extensions"]:
        size = ext["size"]
        n = Shape(targets.shape(cfg, size)).params
        add("init_extension", n * _weight_bytes(cfg, size))  # step 0: a copy of the base weights
        if ext not in trained:  # step 0 only: no fine-tune
            continue
        hp = targets.train_hparams(cfg, ext)
        ds = bool(hp.get("deepspeed"))
        exports = sum(1 for c in ext["checkpoints"] if c > 0)
        add("finetune", exports * n * (2 if hp.get("bf16") else 4), n * RESUME_BYTES[ds])
    for (task, _, size, model), _ in eval_jobs(cfg)[0].items():
        if TASKS[task].train_rule:  # the task's own fine-tune of the model (summarization)
            hp = summarization.hparams(cfg, size, model)
            n = Shape(targets.shape(cfg, size)).params
            add(TASKS[task].train_rule, n * (2 if hp.get("bf16") else 4), n * RESUME_BYTES[bool(hp.get("deepspeed"))])
    for tok in targets.tokenizers(cfg):
        vocab = targets.shape(cfg, targets.tokenizer_size(cfg, tok)).vocab_size
        item = np.dtype(np.uint16 if vocab <= 65536 else np.uint32).itemsize
        sizes = {s for s in cfg["sizes"] if targets.tokenizer_name(cfg, s) == tok}
        datasets = {d for ext in cfg["extensions"] if ext["size"] in sizes
                    for d in ext.get("data", cfg["finetune_data"])}
        for ds in datasets:
            add("tokenize", targets.fetch_train_tokens(cfg, ds) * item)
    return list(rows.values())


def _size(b: float) -> str:
    return f"{b / 1e12:,.2f} TB" if b >= 1e12 else f"{b / 1e9:,.1f} GB" if b >= 1e9 else f"{b / 1e6:,.1f} MB"


def render_disk(cfg: dict) -> str:
    """The disk plan as Markdown (GB = 10^9 bytes)."""
    import pandas as pd

    rows = disk(cfg)
    kept = sum(r["kept"] for r in rows)
    held = max((r["resume_per_job"] for r in rows), default=0)
    keep = targets.train_options(cfg)["keep_resume_state"]
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


def _train_row(job: str, j: dict) -> dict:
    """A training job's row of the cluster plan (``j``: train_job)."""
    return {"job": job, "count": 1, "partition": "GPU", "nodes": j["nodes"],
            "gpus": f"{j['gpus_per_node']}/node" if j["gpus_per_node"] else "-",
            "cpus": f"{j['cpus_per_node']}/node" if j["cpus_per_node"] else "rule",
            "mem_mb": f"{j['mem_mb']}/node" + (" (exclusive)" if j["exclusive"] else ""),
            "runtime": j["runtime"], "submissions": j["submissions"]}


def cluster_plan(cfg: dict) -> list[dict]:
    """What every kind of SLURM job of this config asks (the rules' resources, from the same functions), one row
    per fine-tune and per size's evaluations and tokenization: for README's cluster section and
    ``snakemake cluster_plan``."""
    rows = [_train_row(f"finetune {ext['size']} {targets.extension_name(ext)}", sizing.train_job(cfg, ext))
            for ext in targets.trained(cfg)]
    from .tasks import TASKS

    for name, spec in cfg["tables"].items():  # a fine-tune per model of a task that trains one (summarization)
        cells = kinds.table_cells(cfg, name) if TASKS[kinds.kind(spec).task].train_rule else ()
        for task, dataset, size, model, _ in cells:
            rows.append(_train_row(f"{TASKS[task].train_rule} {size} {model.split('/')[0]} ({dataset})",
                                   sizing.train_job(cfg, targets.model_extension(cfg, size, model))))
    # (task, dataset, size, model) of every evaluation job (a summarization record stands for its generation job)
    evals = {r for t in cfg["tables"] for r in kinds.table_records(cfg, t)}
    shards = {k: n for k, n in eval_shards(cfg).items() if n > 1}  # a sharded evaluation: n GPU jobs
    for size in dict.fromkeys([e["size"] for e in cfg["extensions"]] + list(cfg["sizes"])):  # config order
        e = sizing.eval_job(cfg, size)
        n = sum(shards.get(job, 1) for job in evals if job[2] == size)
        if n:
            rows.append({"job": f"evaluation {size}", "count": n, "partition": "GPU", "nodes": 1,
                         "gpus": e["gpus"] or "-", "cpus": e["cpus"] or "rule", "mem_mb": e["mem_mb"],
                         "runtime": e["runtime"], "submissions": 1})
    for size in cfg["sizes"]:  # the base model and the step 0 of each extension, sealed (seal_job)
        j, n = sizing.seal_job(cfg, size), 1 + sum(ext["size"] == size for ext in cfg["extensions"])
        rows.append({"job": f"seal checkpoints {size} (base, step 0)", "count": n,
                     "partition": "GPU" if j["gpus"] else "CPU", "nodes": 1, "gpus": j["gpus"] or "-",
                     "cpus": j.get("cpus") or "rule", "mem_mb": j["mem_mb"], "runtime": j["runtime"], "submissions": 1})
    if shards:
        rows.append({"job": f"merge shards ({', '.join(sorted({k[0] for k in shards}))})", "count": len(shards),
                     "partition": "CPU", "nodes": 1,
                     "gpus": "-", "cpus": sizing.MERGE_JOB["cpus"], "mem_mb": sizing.MERGE_JOB["mem_mb"],
                     "runtime": sizing.MERGE_JOB["runtime"], "submissions": 1})
    for tok in targets.tokenizers(cfg):  # one tokenization per (dataset, tokenizer), whatever the sizes sharing it
        sizes = {s for s in cfg["sizes"] if targets.tokenizer_name(cfg, s) == tok}
        d = sizing.data_job(cfg, targets.tokenizer_size(cfg, tok))
        train = {ds for ext in cfg["extensions"] if ext["size"] in sizes
                 for ds in ext.get("data", cfg["finetune_data"])}
        train |= {ds for s in sizes if cfg["sizes"][s]["base"]["source"] == "pretrain" for ds in cfg["finetune_data"]}
        evaluated = {ds for task, ds, s, _ in evals if s in sizes and TASKS[task].documents}
        for job, n, cpus in ((f"tokenize ({tok} tokenizer)", len(train), d["cpus"]),
                             (f"evaluation documents ({tok} tokenizer)", len(evaluated), 1)):
            if n:
                rows.append({"job": job, "count": n, "partition": "CPU", "nodes": 1, "gpus": "-", "cpus": cpus,
                             "mem_mb": d["mem_mb"], "runtime": d["runtime"], "submissions": 1})
    return rows


def train_estimate(cfg: dict, ext: dict, hp: dict | None = None, seq: int | None = None,
                   padded: bool = False) -> dict | None:
    """One fine-tune of extension ``ext`` (None without the size's architecture); given ``hp`` and ``seq``, a
    training job with these hyperparameters on the resources of ``ext`` (a summarization fine-tune)."""
    sh = sizing.size_shape(cfg, ext["size"])
    if sh is None:
        return None
    hp = hp or targets.train_hparams(cfg, ext)
    gpus = sizing.train_job(cfg, ext)["gpus"]
    m = METHODS.get(ext.get("method"))  # the control: micro x ctx tokens, attention at L
    window = cfg["base_window"] if m and m.control else None
    return memory.training_peak(sh, hp["micro_batch"], seq or ext["ctx"],
                                dtype_bytes=2 if gpus and hp.get("bf16") else 4,
                         ranks=sizing.train_ranks(cfg, ext), zero=memory.zero_stage(hp),
                         checkpointing=bool(hp.get("gradient_checkpointing")), window=window, padded=padded,
                         gpu=bool(gpus))


def summarize_train_estimate(cfg: dict, size: str, model: str, window: int) -> dict | None:
    """The summarization fine-tune of checkpoint ``model`` of ``size``: examples padded to at most its window, on
    the resources of the checkpoint's extension (the size's for the base model)."""
    ext = targets.model_extension(cfg, size, model)
    return train_estimate(cfg, ext, summarization.hparams(cfg, size, model), window, padded=True)


def eval_estimate(cfg: dict, task: str, size: str, windows) -> dict | None:
    """One evaluation job of ``task`` (pi_repro.tasks; rouge: the generation) on ``size`` at ``windows``."""
    from .tasks import TASKS

    sh = sizing.size_shape(cfg, size)
    if sh is None:
        return None
    gpus = sizing.eval_job(cfg, size)["gpus"]
    from .cost import toolbox

    kw = {"dtype_bytes": 2 if gpus else 4, "gpus": gpus, "gpu": bool(gpus)}
    return TASKS[task].peak(cfg, sh, max(windows), kw, toolbox())


def estimates(cfg: dict) -> list[dict]:
    """Every training and evaluation job the config's tables need, with its estimate: rule, what, size, method,
    ctx, key (the config key that sizes it), gpus, bytes, breakdown (jobs of sizes without an architecture left
    out). A sharded evaluation's shards each hold what the whole job would."""
    out = []

    def add(rule, what, size, method, ctx, key, gpus, est, batch_key=None):  # batch_key None: a training job
        if est is not None:
            out.append({"rule": rule, "what": what, "size": size, "method": method, "ctx": ctx, "key": key,
                        "gpus": gpus, "batch_key": batch_key, **est})

    for i, ext in enumerate(cfg["extensions"]):
        if ext["steps"] > 0:
            add("finetune", f"{ext['size']} {targets.extension_name(ext)}", ext["size"], ext["method"], ext["ctx"],
                f"extensions[{i}]", sizing.train_job(cfg, ext)["gpus"], train_estimate(cfg, ext))
    from .tasks import TASKS

    jobs, _ = eval_jobs(cfg)
    for (task, ds, size, model), j in jobs.items():
        c, w, t = targets.model_coords(cfg, size, model), max(j["windows"]), TASKS[task]
        if t.train_rule:  # the model is first fine-tuned for the task (summarization)
            ext = targets.model_extension(cfg, size, model)
            key = f"extensions[{cfg['extensions'].index(ext)}]" if model != "base" else f"sizes.{size}.resources"
            add(t.train_rule, f"{size} {model} on {ds}", size, c["method"], c["ctx"], key,
                sizing.train_job(cfg, ext)["gpus"], summarize_train_estimate(cfg, size, model, w))
        add(t.rule, f"{size} {model} on {ds} at {w}", size, c["method"], c["ctx"],
            f"sizes.{size}.resources.eval_gpus", sizing.eval_job(cfg, size)["gpus"],
            eval_estimate(cfg, task, size, sorted(j["windows"])), t.batch_key)
    return out


def check_time(cfg: dict) -> None:
    """Refuse (ConfigError) the first GPU evaluation job (or shard of one) that cannot resume (``Task.resumable``)
    and whose estimated wall time (the cost plan's, at its MFU) exceeds the time its job asks (``eval_runtime``,
    capped at the cluster's limit): SLURM would kill it at the limit, every time. Only where the config prices jobs
    (a ``cost`` block)."""
    if "cost" not in cfg:
        return
    for r in plan(cfg):
        job = r.get("eval")
        if not job or not r["gpus_per_job"] or r["wall_hours"] is None or TASKS[job[0]].resumable:
            continue
        asked = sizing.eval_job(cfg, job[2])["runtime"]
        if r["wall_hours"] * 60 > asked:
            t = TASKS[job[0]]
            fail(f"sizes.{job[2]}.resources.eval_runtime",
                 f"job {r['rule']} {r['what']} needs an estimated {r['wall_hours']:.1f} h (cost plan) and asks "
                 f"{asked} min (eval_runtime, capped at cluster.time_limit_min); SLURM would stop it every time: "
                 f"fewer prompts or lengths ({t.batch_key.split('.')[0]} block), more GPUs (eval_gpus)"
                 + (f", or shards ({t.sharded}.shard_hours)" if t.sharded else ""))


def check_memory(cfg: dict) -> None:
    """Refuse (ConfigError) the first GPU job whose estimated peak exceeds one GPU's memory, naming it."""
    limit = memory.gpu_memory(cfg)
    for e in estimates(cfg):
        if e["gpus"] and e["bytes"] > limit:
            train = e["batch_key"] is None  # a training job (an evaluation names its batch size's key)
            fix = ("more ranks (resources: train_nodes, train_gpus_per_node) to partition the weights and optimizer "
                   "state over, a smaller micro_batch (the global batch is kept by gradient accumulation), "
                   "train.gradient_checkpointing: true, or ZeRO-3 (train.deepspeed)" if train else
                   f"more GPUs to spread the model over (resources: eval_gpus) or a smaller {e['batch_key']}")
            fail(e["key"], f"job {e['rule']} {e['what']} (size {e['size']}, method {e['method']}, ctx {e['ctx']}) "
                   f"needs an estimated {memory.describe(e)} per GPU, more than the {memory.gb(limit):g} GB of one GPU "
                   f"(cost.gpu_memory_gb); change: {fix}")
