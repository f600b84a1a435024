"""Configuration: validation (schema + semantics, before any job runs) and the expansion into targets.

The DAG's shape comes from the config alone; these functions are what ``workflow/rules/common.smk`` calls.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path

import yaml

from . import METHODS

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
ROOT = Path(__file__).resolve().parents[2]  # the repository: config paths are relative to it


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def _where(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _did_you_mean(e) -> str:
    """For an unknown key: the closest allowed keys at that place, if any are close."""
    import difflib

    allowed = list(e.schema.get("properties") or {})
    unknown = [k for k in (e.instance or {}) if k not in allowed] if isinstance(e.instance, dict) else []
    hints = [f"{k!r} -> {m[0]!r}" for k in unknown if (m := difflib.get_close_matches(k, allowed, n=1, cutoff=0.6))]
    return f"; did you mean {', '.join(hints)}?" if hints else ""


EXTENDS = "extends"


def merge_patch(target, patch):
    """``patch`` applied to ``target`` as a JSON Merge Patch (RFC 7396): mappings merge key by key, a null removes
    the key, anything else (lists included) replaces the target's value whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def resolve_extends(cfg: dict, chain: tuple = ()) -> dict:
    """A config that names another (``extends: config/config.yaml``, relative to the repository root) states
    only what differs from it: the result is that config (itself resolved) with this one applied as a merge patch
    (``merge_patch``). A config without ``extends`` is returned as it is."""
    if EXTENDS not in cfg:
        return cfg
    rel = cfg[EXTENDS]
    path = ROOT / str(rel)
    if not isinstance(rel, str) or not path.is_file():
        raise ConfigError(f"config error at {EXTENDS}: {rel!r} is not a config file (paths are relative to the "
                          "repository root)")
    if path.resolve() in chain:
        names = " -> ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in (*chain, path.resolve()))
        raise ConfigError(f"config error at {EXTENDS}: the configs extend each other in a circle: {names}")
    base = yaml.safe_load(path.read_text())
    if not isinstance(base, dict):
        raise ConfigError(f"config error at {EXTENDS}: {rel} is not a mapping of configuration keys")
    return merge_patch(resolve_extends(base, (*chain, path.resolve())), {k: v for k, v in cfg.items() if k != EXTENDS})


def validate(cfg: dict) -> dict:
    """Raise :class:`ConfigError` naming the key of the first problem found; return ``cfg`` otherwise. A config
    that ``extends`` another is first replaced, in place, by the merged config (``resolve_extends``)."""
    import jsonschema

    if EXTENDS in cfg:
        merged = resolve_extends(cfg)
        cfg.clear()
        cfg.update(merged)

    schema = yaml.safe_load(SCHEMA.read_text())
    schema["$defs"]["method"]["enum"] = list(METHODS)
    load_plugins(cfg)
    table = schema["$defs"]["table"]
    table["properties"]["kind"]["enum"] = list(_kinds())
    for name, k in _kinds().items():  # each kind's own schema for its entries (pi_repro.kinds)
        table.setdefault("allOf", []).append({"if": {"properties": {"kind": {"const": name}}}, "then": k.schema})
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        msg = e.message
        if e.validator == "additionalProperties":
            msg = f"unknown key ({msg}){_did_you_mean(e)}"
        if e.validator == "oneOf" and isinstance(e.instance, dict):
            msg = f"does not match any allowed form for source {e.instance.get('source')!r}: {e.instance}"
        raise ConfigError(f"config error at {_where(e.absolute_path)}: {msg}")
    _semantic_checks(cfg)
    return cfg


def fail(key: str, msg: str):
    raise ConfigError(f"config error at {key}: {msg}")


def _semantic_checks(cfg: dict) -> None:
    L = cfg["base_window"]
    datasets, sizes = cfg["datasets"], cfg["sizes"]
    for name, d in datasets.items():
        if d["source"] == "local" and not ("path" in d and "sha256" in d):
            fail(f"datasets.{name}", "a local dataset needs path and sha256")
        if d["source"] == "hub" and "hub" not in d:
            fail(f"datasets.{name}", "a hub dataset needs a hub block")
        if d["source"] == "hub" and set(d["hub"].get("data_files", {})) - set(d["hub"]["splits"]):
            fail(f"datasets.{name}.hub.data_files", "names a split that is not in hub.splits")
        ev = d.get("eval")
        if ev and ev["style"] == "proofpile" and not ("num_docs" in ev and "doc_tokens" in ev):
            fail(f"datasets.{name}.eval", "proofpile style needs num_docs and doc_tokens")
    for i, name in enumerate(cfg["finetune_data"]):
        if name not in datasets:
            fail(f"finetune_data[{i}]", f"unknown dataset {name!r}")
    seen = set()
    for i, ext in enumerate(cfg["extensions"]):
        key = f"extensions[{i}]"
        if ext["size"] not in sizes:
            fail(f"{key}.size", f"unknown size {ext['size']!r}; sizes are {sorted(sizes)}")
        if ext["ctx"] < L:
            fail(f"{key}.ctx", f"scale {ext['ctx']}/{L} < 1: an extension cannot shrink the window")
        if ext["method"] == "CT" and ext["ctx"] % L:
            fail(f"{key}.ctx", f"CT trains at L={L} on the ctx-long sequences, so ctx must be a multiple of L")
        if ext["method"] != "CT" and ext["ctx"] == L:
            fail(f"{key}.ctx", f"{ext['method']} at ctx = L = {L} is not an extension (scale 1)")
        for j, c in enumerate(ext["checkpoints"]):
            if c > ext["steps"]:
                fail(f"{key}.checkpoints[{j}]", f"checkpoint step {c} is beyond the {ext['steps']} training steps")
        if ext["steps"] not in ext["checkpoints"]:
            fail(f"{key}.checkpoints", f"must include the final step {ext['steps']}")
        if ext["steps"] == 0 and ext["method"] != "PI":
            fail(f"{key}.steps", f"{ext['method']} without fine-tuning is the base model: use a method None row")
        mix = ext.get("mixture", "corpus")
        if mix != "corpus" and mix not in cfg.get("finetune_mixtures", {}):
            fail(f"{key}.mixture", f"unknown mixture {mix!r}: corpus or one of finetune_mixtures "
                 f"{sorted(cfg.get('finetune_mixtures', {}))}")
        if mix != "corpus" and ext["steps"] == 0:
            fail(f"{key}.mixture", "an extension without fine-tuning (steps: 0) reads no fine-tuning data")
        for j, name in enumerate(ext.get("data", [])):
            if name not in datasets:
                fail(f"{key}.data[{j}]", f"unknown dataset {name!r}")
        ident = (ext["size"], extension_name(ext))
        if ident in seen:
            fail(key, f"duplicate extension {ident} (give a variant its own tag)")
        seen.add(ident)
        hp = train_hparams(cfg, ext)
        ranks = train_ranks(cfg, ext)
        if hp["global_batch"] % (hp["micro_batch"] * ranks):
            fail(f"{key}", f"global batch {hp['global_batch']} is not a multiple of micro batch {hp['micro_batch']}"
                  f" x {ranks} ranks (train_nodes x GPUs or processes per node)")
        for name in ext.get("data", cfg["finetune_data"]):
            if "train" not in datasets[name].get("hub", {}).get("splits", {"train": None}):
                fail(f"{key}.data", f"dataset {name!r} has no train split to fine-tune on")
        job = train_job(cfg, ext)
        if job["exclusive"] and not job["mem_mb"]:
            fail(f"{key}.resources.train_full_node", "a full-node job needs cluster.node_mem_mb (memory per node)")
        if job["srun"] and job["procs_per_node"] == 1 and job["nodes"] == 1:
            fail(f"{key}.resources.train_launch", "the srun launch on one node needs at least 2 ranks per node "
                  "(SLURM's mpi jobs have more than one task)")
    for size, c in sizes.items():
        if "tokenizer" not in c:
            continue
        shared = [s for s in sizes if tokenizer_name(cfg, s) == c["tokenizer"]]
        trained = [s for s in shared if sizes[s]["base"]["source"] == "pretrain"]
        if len(shared) > 1 and trained:
            fail(f"sizes.{size}.tokenizer", f"{c['tokenizer']!r} is shared by {shared}, but {trained} train their own "
                 "tokenizer (source: pretrain): only sizes whose weights come with their tokenizer (local, hub) can "
                 "share one")
    ppl = cfg["perplexity"]
    windows = ppl["windows"]
    if ppl["stride"] >= min(windows):
        fail("perplexity.stride", f"stride {ppl['stride']} must be smaller than the smallest evaluation window "
              f"{min(windows)} (windows must overlap for every token to have context)")
    if L not in windows:
        fail("perplexity.windows", f"must include the base window L = {L}")
    if "shards" in ppl and "shard_hours" in ppl:
        fail("perplexity.shards", "set either shards (a fixed number per job) or shard_hours (sized from the cost "
             "plan), not both")
    for size in sizes if "shard_hours" in ppl else ():
        limit = eval_job(cfg, size)["runtime"] / 60
        if ppl["shard_hours"] > limit:
            fail("perplexity.shard_hours", f"{ppl['shard_hours']} h is longer than the {limit:g} h an evaluation job "
                 f"of {size} may run (sizes.{size}.resources.eval_runtime, cluster.time_limit_min)")
    for name, spec in cfg["tables"].items():
        kind(spec).validate(cfg, name, spec)
    paper = cfg.get("audit", {}).get("paper")
    if paper and not (ROOT / paper).is_file():
        fail("audit.paper", f"{paper}: no such file (the paper's cells, e.g. resources/paper/tables.csv)")
    for i, ext in enumerate(cfg["extensions"]):
        if ext["ctx"] not in windows:
            fail(f"extensions[{i}].ctx", f"{ext['ctx']} is not one of perplexity.windows {windows}")
    for w in windows:
        if not any(w <= m for m in model_windows(cfg)):
            fail("perplexity.windows",
                 f"evaluation window {w} exceeds every model's window ({max(model_windows(cfg))})")
    for name, d in datasets.items():
        ev = d.get("eval") or {}
        if ev.get("style") == "proofpile":
            used = max(model_windows(cfg))
            if ev["doc_tokens"] < used:
                fail(f"datasets.{name}.eval.doc_tokens",
                     f"{ev['doc_tokens']} is shorter than the largest evaluation window {used}")
    for name, b in built_benchmarks(cfg).items():
        if b["dataset"] not in datasets:
            fail(f"benchmarks.tasks.{name}.build.dataset", f"unknown dataset {b['dataset']!r}")
        if datasets[b["dataset"]]["source"] == "hub" and "test" not in datasets[b["dataset"]]["hub"]["splits"]:
            fail(f"benchmarks.tasks.{name}.build.dataset", f"dataset {b['dataset']!r} has no test split to build from")
        if b.get("context_tokens", 64) + 16 > benchmark_window(cfg):
            fail(f"benchmarks.tasks.{name}.build.context_tokens", f"{b.get('context_tokens', 64)} context tokens and "
                 f"an option do not fit the benchmark window {benchmark_window(cfg)}")
    c = cluster(cfg)
    if c.get("time_limit_min") and c["stop_margin_min"] >= c["time_limit_min"]:
        fail("cluster.stop_margin_min", f"{c['stop_margin_min']} min leaves no training time within the time limit"
              f" of {c['time_limit_min']} min")
    ds_cfg = cfg["train"].get("deepspeed")
    if ds_cfg and not Path(ds_cfg).is_file():
        fail("train.deepspeed", f"DeepSpeed config {ds_cfg} does not exist (paths are relative to the repository root)")
    if ds_cfg and not cfg["train"].get("deepspeed_compiled_ops"):
        problem = deepspeed_compiler_needed(json.loads(Path(ds_cfg).read_text()))
        if problem:
            fail("train.deepspeed", f"{ds_cfg}: {problem}")
    from .memory import check as check_memory  # last: it reads what the checks above made sure of

    check_memory(cfg)  # a GPU job whose estimated peak memory exceeds its GPU's (pi_repro/memory.py)


def deepspeed_compiler_needed(ds: dict) -> str | None:
    """Why a DeepSpeed config's optimizer would be compiled at run time (None if it would not): DeepSpeed's Adam
    without ``torch_adam`` is its FusedAdam (DeepSpeedCPUAdam with an optimizer offload), built by the first rank
    that reaches it with nvcc and CUDA_HOME, which compute nodes often lack, after the model has loaded."""
    opt = ds.get("optimizer") or {}
    if opt.get("type", "").lower() not in ("adam", "adamw") or (opt.get("params") or {}).get("torch_adam"):
        return None
    offload = ((ds.get("zero_optimization") or {}).get("offload_optimizer") or {}).get("device", "none")
    op = "DeepSpeedCPUAdam" if offload == "cpu" else "FusedAdam"
    return (f"optimizer {opt['type']} without torch_adam is DeepSpeed's {op}, compiled at run time on every node "
            "(nvcc and CUDA_HOME needed there). Set optimizer.params.torch_adam: true (torch's AdamW; add "
            "\"fused\": true for its fused CUDA kernel), or, where DeepSpeed was installed with its ops prebuilt "
            "(DS_BUILD_OPS=1), set train.deepspeed_compiled_ops: true")


def load(path: str | Path) -> dict:
    return validate(yaml.safe_load(Path(path).read_text()))


# ---------------------------------------------------------------------------------------------- expansion
def find_extension(cfg: dict, size: str, method: str, ctx: int, tag: str | None = None) -> dict | None:
    for ext in cfg["extensions"]:
        if (ext["size"], ext["method"], int(ext["ctx"]), ext.get("tag")) == (size, method, int(ctx), tag):
            return ext
    return None


def trained(cfg: dict) -> list[dict]:
    """The extensions that are fine-tuned (``steps`` > 0; steps 0 is PI on the base weights, step 0 only)."""
    return [ext for ext in cfg["extensions"] if ext["steps"] > 0]


def extension_by_name(cfg: dict, size: str, name: str) -> dict | None:
    """The extension ``{method}-{ctx}[-{tag}]`` of ``size`` (the ``ext`` wildcard of the rules)."""
    for ext in cfg["extensions"]:
        if ext["size"] == size and extension_name(ext) == name:
            return ext
    return None


def extension_name(ext: dict) -> str:
    return f"{ext['method']}-{ext['ctx']}" + (f"-{ext['tag']}" if ext.get("tag") else "")


def resources(cfg: dict, size: str, ext: dict | None = None) -> dict:
    """Cluster resources: the size's, overridden by the extension's (e.g. 128 GPUs for the longer windows)."""
    return {**cfg["sizes"][size].get("resources", {}), **((ext or {}).get("resources", {}))}


# ------------------------------------------------------------------------------------------------ cluster
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


def model_extension(cfg: dict, size: str, model: str) -> dict:
    """The extension a checkpoint ``model`` (``base`` or ``{name}/step{N}``) of ``size`` belongs to; for the base
    model ``{"size": size}``, which asks the size's resources (train_job, resources)."""
    return {"size": size} if model == "base" else extension_by_name(cfg, size, model.split("/")[0])


def _train_row(job: str, j: dict) -> dict:
    """A training job's row of the cluster plan (``j``: train_job)."""
    return {"job": job, "count": 1, "partition": "GPU", "nodes": j["nodes"],
            "gpus": f"{j['gpus_per_node']}/node" if j["gpus_per_node"] else "-",
            "cpus": f"{j['cpus_per_node']}/node" if j["cpus_per_node"] else "rule",
            "mem_mb": f"{j['mem_mb']}/node" + (" (exclusive)" if j["exclusive"] else ""),
            "runtime": j["runtime"], "submissions": j["submissions"]}


def finetune_retries(cfg: dict) -> int | None:
    """Resubmissions the fine-tune rule allows: those the longest fine-tune needs to finish within the time limit,
    plus ``failure_retries``; None (Snakemake's --retries decides) when every fine-tune fits in one job."""
    most = max((train_job(cfg, ext)["submissions"] for ext in trained(cfg)), default=1)
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
        from .memory import size_shape

        sh = size_shape(cfg, size)  # (None for hub weights without a shape: the data job's memory)
        return dict(d, gpus=0, mem_mb=max(d["mem_mb"], math.ceil(sh.params * 4 * 1.25 / 2**20) if sh else 0))
    return dict(e, runtime=d["runtime"])


# merging the records of a sharded perplexity evaluation: seconds on one CPU
MERGE_JOB = {"gpus": 0, "cpus": 1, "mem_mb": 4000, "runtime": 15}


def data_job(cfg: dict, size: str) -> dict:
    """What the CPU jobs of a size ask: tokenization, weight download (and sealing, without evaluation GPUs)."""
    r = resources(cfg, size)
    return {"cpus": r.get("data_cpus", 2), "mem_mb": r.get("data_mem_mb", 8000),
            "runtime": _capped(cfg, r.get("data_runtime", 240))}


def cluster_plan(cfg: dict) -> list[dict]:
    """What every kind of SLURM job of this config asks (the rules' resources, from the same functions), one row
    per fine-tune and per size's evaluations and tokenization: for README's cluster section and
    ``snakemake cluster_plan``."""
    rows = [_train_row(f"finetune {ext['size']} {extension_name(ext)}", train_job(cfg, ext))
            for ext in trained(cfg)]
    from .tasks import TASKS

    for name, spec in cfg["tables"].items():  # a fine-tune per model of a task that trains one (summarization)
        for task, dataset, size, model, _ in table_cells(cfg, name) if TASKS[kind(spec).task].train_rule else ():
            rows.append(_train_row(f"{TASKS[task].train_rule} {size} {model.split('/')[0]} ({dataset})",
                                   train_job(cfg, model_extension(cfg, size, model))))
    # (task, dataset, size, model) of every evaluation job (a summarization record stands for its generation job)
    evals = {r for t in cfg["tables"] for r in table_records(cfg, t)}
    from .cost import perplexity_shards

    shards = {k: n for k, n in perplexity_shards(cfg).items() if n > 1}  # a sharded evaluation: n GPU jobs
    for size in dict.fromkeys([e["size"] for e in cfg["extensions"]] + list(cfg["sizes"])):  # config order
        e = eval_job(cfg, size)
        n = sum(shards.get((d, s, m), 1) for _, d, s, m in evals if s == size)
        if n:
            rows.append({"job": f"evaluation {size}", "count": n, "partition": "GPU", "nodes": 1,
                         "gpus": e["gpus"] or "-", "cpus": e["cpus"] or "rule", "mem_mb": e["mem_mb"],
                         "runtime": e["runtime"], "submissions": 1})
    for size in cfg["sizes"]:  # the base model and the step 0 of each extension, sealed (seal_job)
        j, n = seal_job(cfg, size), 1 + sum(ext["size"] == size for ext in cfg["extensions"])
        rows.append({"job": f"seal checkpoints {size} (base, step 0)", "count": n,
                     "partition": "GPU" if j["gpus"] else "CPU", "nodes": 1, "gpus": j["gpus"] or "-",
                     "cpus": j.get("cpus") or "rule", "mem_mb": j["mem_mb"], "runtime": j["runtime"], "submissions": 1})
    if shards:
        rows.append({"job": "merge perplexity shards", "count": len(shards), "partition": "CPU", "nodes": 1,
                     "gpus": "-", "cpus": MERGE_JOB["cpus"], "mem_mb": MERGE_JOB["mem_mb"],
                     "runtime": MERGE_JOB["runtime"], "submissions": 1})
    for tok in tokenizers(cfg):  # one tokenization per (dataset, tokenizer), whatever the sizes sharing it
        sizes = {s for s in cfg["sizes"] if tokenizer_name(cfg, s) == tok}
        d = data_job(cfg, tokenizer_size(cfg, tok))
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


def train_tokens_needed(cfg: dict, dataset: str) -> int:
    """Tokens of ``dataset``'s training split that the largest fine-tune on it consumes (steps x batch x ctx);
    0 if no fine-tune uses it. A hub training subset is fetched to this size, not the whole dataset."""
    need = 0
    for ext in cfg["extensions"]:
        if dataset in ext.get("data", cfg["finetune_data"]):
            hp = train_hparams(cfg, ext)
            need = max(need, hp["steps"] * hp["global_batch"] * ext["ctx"])
    return need


def token_budget(tokens: int) -> int:
    """``tokens`` rounded up to the next m x 2^k with 8 <= m < 16 (at most 12.5% more): the size a hub training
    subset is fetched at. A function of the config alone (a fresh run fetches what a rerun would), and a change
    of the fine-tunes' steps or batch that stays inside its bracket refetches nothing (and so retrains nothing)."""
    if tokens <= 0:
        return 0
    unit = 1 << max(0, tokens.bit_length() - 4)
    return -(-tokens // unit) * unit


def fetch_train_tokens(cfg: dict, dataset: str) -> int:
    """The training tokens a dataset is fetched for (rule fetch_dataset): a hub subset sized by the fine-tunes'
    budget (``token_budget``); 0 where the amount changes nothing (a local file, a hub dataset fetched whole)."""
    spec = cfg["datasets"][dataset]
    if spec["source"] != "hub" or spec["hub"].get("subset", "budget") == "all":
        return 0
    return token_budget(train_tokens_needed(cfg, dataset))


def results_config(cfg: dict) -> dict:
    """The config less what changes no result: where the jobs run and what they ask of the cluster (``cluster``,
    ``cost``, every ``resources`` block) and the path of a local dataset (its sha256 stands for its bytes). Its
    digest is the config digest every job records and the audit's rerun trigger."""
    out = {k: v for k, v in cfg.items() if k not in ("cluster", "cost")}
    out["datasets"] = {d: fetch_spec(cfg, d) | ({"eval": s["eval"]} if "eval" in s else {})
                       for d, s in cfg["datasets"].items()}
    out["sizes"] = {n: {k: v for k, v in s.items() if k != "resources"} | {"base": base_spec(cfg, n)}
                    for n, s in cfg["sizes"].items()}
    out["extensions"] = [{k: v for k, v in e.items() if k != "resources"} for e in cfg["extensions"]]
    return out


def config_digest(cfg: dict) -> str:
    """sha256 of ``results_config`` (keys sorted: the order a file lists them in changes nothing)."""
    return hashlib.sha256(json.dumps(results_config(cfg), sort_keys=True, default=str).encode()).hexdigest()


def base_spec(cfg: dict, size: str) -> dict:
    """What decides a size's base weights (rule base_model's param): shipped weights by the sha256 of the SHA256SUMS
    that lists their files' (``preflight`` checks them before any job), not by the folder's path."""
    spec = dict(cfg["sizes"][size]["base"])
    if spec["source"] == "local":
        from .preflight import model_dir_digest

        spec["sha256sums"] = model_dir_digest(spec.pop("path"))
    return spec


def fetch_spec(cfg: dict, dataset: str) -> dict:
    """What decides a dataset's fetched content (rule fetch_dataset's param): its source and pinned revision or
    sha256; not its evaluation block (rule eval_docs) nor a local file's path (its sha256 stands for its bytes)."""
    return {k: v for k, v in cfg["datasets"][dataset].items() if k not in ("eval", "path")}


def model_windows(cfg: dict) -> list[int]:
    """Largest perplexity window of each model: its ctx, or (base models) the largest a perplexity table asks of
    them (passkey prompts are generated at any length and need no documents that long)."""
    out = [ext["ctx"] for ext in cfg["extensions"]]
    from .tasks import TASKS

    out += [c[4] for t in cfg["tables"] for c in table_cells(cfg, t) if TASKS[c[0]].documents and c[3] == "base"]
    return out or [cfg["base_window"]]


# `train` keys that change how a fine-tune runs or reports, never what it computes: not hyperparameters (a change
# reruns nothing and keeps the resume state); the jobs get them as options (train_options)
RUN_OPTIONS = ("deepspeed_compiled_ops", "report_to", "keep_resume_state")


def train_options(cfg: dict) -> dict:
    """What every training job is told besides its hyperparameters: experiment tracking (``report_to``: none,
    tensorboard or wandb, through the Trainer) and whether the resume state is kept once the exports are verified."""
    t = cfg["train"]
    return {"report_to": t.get("report_to", "none"), "keep_resume_state": bool(t.get("keep_resume_state", False))}


def train_block(cfg: dict) -> dict:
    """The ``train`` block's hyperparameters: every key but the run options."""
    return {k: v for k, v in cfg["train"].items() if k not in RUN_OPTIONS}


def train_hparams(cfg: dict, ext: dict) -> dict:
    """Fine-tuning hyperparameters of one extension: train defaults, then the size's, then the extension's."""
    size = cfg["sizes"][ext["size"]]
    hp = train_block(cfg)
    for src in (size, ext):
        for k in ("global_batch", "micro_batch"):
            if k in src:
                hp[k] = src[k]
    hp.update(lr=size["lr"], steps=ext["steps"], seed=cfg["seed"])
    if ext.get("mixture", "corpus") != "corpus":  # the text alone (corpus) adds nothing: its runs stay as they were
        hp["mixture"] = {"name": ext["mixture"], **cfg["finetune_mixtures"][ext["mixture"]]}
    return hp


def mixture_name(cfg: dict, ext: dict | None) -> str | None:
    """The fine-tuning data mixture of an extension (``corpus``: the text alone); None for the base model and for
    PI without fine-tuning (no fine-tuning data)."""
    if ext is None or ext["steps"] == 0:
        return None
    return ext.get("mixture", "corpus")


def tokenizer_name(cfg: dict, size: str) -> str:
    """The name of a size's tokenizer (``sizes.<size>.tokenizer``, default the size's own name): sizes that share
    one share their tokenized data, ``data/{dataset}/{tokenizer}/`` (the paper's four LLaMA sizes: one
    tokenization of the Pile subset, not four)."""
    return cfg["sizes"][size].get("tokenizer", size)


def tokenizer_size(cfg: dict, name: str) -> str:
    """The size whose tokenizer tokenizes the data of tokenizer ``name`` (the first size, in config order, that
    has it; every other size's tokenizer is checked against the data's digest when it reads it)."""
    return next(s for s in cfg["sizes"] if tokenizer_name(cfg, s) == name)


def tokenizers(cfg: dict) -> list[str]:
    return list(dict.fromkeys(tokenizer_name(cfg, s) for s in cfg["sizes"]))


def final_model(ext: dict) -> str:
    return f"{extension_name(ext)}/step{ext['steps']}"


# -------------------------------------------------------------------------------------------------- tables
def _kinds() -> dict:
    from .kinds import KINDS  # kinds builds on this module

    return KINDS


def load_plugins(cfg: dict) -> None:
    """Import the config's ``plugins`` (Python files, relative to the repository): each registers its table kinds
    (pi_repro.kinds.register) or evaluation tasks; a file already imported is not imported again."""
    import importlib.util
    import sys

    for i, rel in enumerate(cfg.get("plugins", [])):
        path = (ROOT / rel).resolve()
        name = "pi_repro_plugin_" + re.sub(r"\W", "_", str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                                              else path))
        if name in sys.modules:
            continue
        if not path.is_file():
            fail(f"plugins[{i}]", f"{rel}: no such file")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise


def kind(spec: dict):
    """The table kind (pi_repro.kinds) of a `tables:` entry."""
    return _kinds()[spec["kind"]]


def table_title(name: str, spec: dict) -> str:
    return spec.get("title") or re.sub(r"^table(\d+)$", r"Table \1", name)


def table_cells(cfg: dict, name: str) -> list[tuple]:
    """Every cell (task, dataset, size, model, window) of table ``name``."""
    spec = cfg["tables"][name]
    return kind(spec).cells(cfg, spec)


def table_records(cfg: dict, name: str) -> list[tuple]:
    """The evaluation records (task, dataset, size, model) table ``name`` reads: one per checkpoint, each holding
    all the windows of that checkpoint."""
    return list(dict.fromkeys(c[:4] for c in table_cells(cfg, name)))


def tables_of_kind(cfg: dict, *kinds: str) -> list[str]:
    return [n for n, spec in cfg["tables"].items() if spec["kind"] in kinds]


def eval_windows(cfg: dict, task: str, dataset: str, size: str, model: str) -> list[int]:
    """Every window at which any table needs ``model`` evaluated by ``task`` on ``dataset`` (one job evaluates
    them all: loading a model once per window would cost more than the evaluation itself on small models)."""
    need = {c[4] for t in cfg["tables"] for c in table_cells(cfg, t) if c[:4] == (task, dataset, size, model)}
    return sorted(need)


PASSKEY_DEFAULTS = {"num_k": 32, "trials": 10, "threshold": 0.2, "intro": True, "batch_size": 8}


def passkey_protocol(cfg: dict) -> dict:
    """The config's ``passkey`` block with the paper's protocol as defaults."""
    return {**PASSKEY_DEFAULTS, **cfg.get("passkey", {})}


def benchmark_window(cfg: dict) -> int:
    """Table 5's window: the original one, L, unless the benchmarks block says otherwise."""
    return cfg.get("benchmarks", {}).get("window", cfg["base_window"])


def built_benchmarks(cfg: dict) -> dict:
    """The benchmark tasks this pipeline builds from a dataset (name -> build recipe); the others are the
    harness's or shipped definitions."""
    return {n: t["build"] for n, t in cfg.get("benchmarks", {}).get("tasks", {}).items() if "build" in t}


def harness_benchmarks(cfg: dict) -> list[str]:
    """The benchmark tasks read from the harness's (or a shipped) definition: they need the hub or its cache."""
    return [n for n, t in cfg.get("benchmarks", {}).get("tasks", {}).items() if "build" not in t]


def model_finetune_data(cfg: dict, size: str, model: str) -> list[str]:
    """The datasets checkpoint ``model`` was fine-tuned on (none for the base model)."""
    if model == "base":
        return []
    return list(model_extension(cfg, size, model).get("data", cfg["finetune_data"]))


THEORY_DEFAULTS = {"d": 128, "c": 10000.0, "window": 2048, "points": 2049, "seed": 0}


AUDIT_DEFAULTS = {"determinism": {"jobs": {"tokenize": 1, "perplexity": 1, "table": 1}, "tolerance": {}},
                  "paper": None}


def audit(cfg: dict) -> dict:
    """The audit's setting: which jobs to re-execute (by rule), their tolerances, the paper's cells (if any)."""
    a = cfg.get("audit", {})
    return {"determinism": {**AUDIT_DEFAULTS["determinism"], **a.get("determinism", {})},
            "paper": a.get("paper", AUDIT_DEFAULTS["paper"])}


def theory(cfg: dict) -> dict:
    """Figure 2's setting: the paper's (LLaMA 7B: head dimension 128, RoPE base 10000, L = 2048) by default."""
    return {**THEORY_DEFAULTS, **cfg.get("theory", {})}


def model_coords(cfg: dict, size: str, model: str) -> dict:
    """What a record says about its checkpoint (so that nothing parses paths): size, method (None for the base
    model), ctx (its window), tag, step, mixture (its fine-tuning data mixture, ``mixture_name``)."""
    if model == "base":
        return {"size": size, "method": "None", "ctx": cfg["base_window"], "tag": None, "step": 0, "mixture": None}
    name, step = model.split("/")
    ext = extension_by_name(cfg, size, name)
    if ext is None:
        raise ValueError(f"no extension {size} {name} in the config")
    return {"size": size, "method": ext["method"], "ctx": ext["ctx"], "tag": ext.get("tag"),
            "step": int(step.removeprefix("step")), "mixture": mixture_name(cfg, ext)}


def lead_path(run_dir: str, dataset: str) -> str:
    """The LEAD baseline's ROUGE record of a summarization dataset (it belongs to no model)."""
    return f"{run_dir}/eval/rouge/{dataset}/lead/rouge.json"


def summarizer_dir(run_dir: str, dataset: str, size: str, model: str) -> str:
    """Where checkpoint ``model`` of ``size`` fine-tuned to summarize ``dataset`` lives (its finetune.json, its
    exported step)."""
    return f"{run_dir}/models/{size}/summarize-{dataset}/{model}"


def summarization_hparams(cfg: dict, size: str, model: str) -> dict:
    """The summarization fine-tune's optimizer: the fine-tunes' (train block, the size's lr), with the batch and
    lr of the summarization block where it gives them; its steps are set from the epochs in the job."""
    from .summarization import protocol

    s = protocol(cfg)
    hp = train_block(cfg)
    size_cfg = cfg["sizes"][size]
    for k in ("global_batch", "micro_batch"):
        hp[k] = s.get(k, size_cfg.get(k, hp[k]))
    hp.update(lr=s.get("lr", size_cfg["lr"]), seed=cfg["seed"])
    return hp


def eval_path(run_dir: str, task: str, dataset: str, size: str, model: str) -> str:
    """The one path of an evaluation record (rule outputs and table inputs both come from here)."""
    return f"{run_dir}/eval/{task}/{dataset}/{size}/{model}/{task}.json"
