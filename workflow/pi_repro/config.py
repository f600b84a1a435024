"""Configuration: validation (schema + semantics, before any job runs) and the expansion into targets.

The DAG's shape comes from the config alone; these functions are what ``workflow/rules/common.smk`` calls.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import yaml

from . import kinds, sizing, targets
from .methods import METHODS
from .cost import check_memory, check_time
from .targets import ROOT, ConfigError, fail

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


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
    table["properties"]["kind"]["enum"] = list(kinds.KINDS)
    for name, k in kinds.KINDS.items():  # each kind's own schema for its entries (pi_repro.kinds)
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
        m = METHODS[ext["method"]]
        if m.control and ext["ctx"] % L:
            fail(f"{key}.ctx", f"{ext['method']} trains at L={L} on the ctx-long sequences, so ctx must be a multiple "
                 "of L")
        if not m.control and ext["ctx"] == L:
            fail(f"{key}.ctx", f"{ext['method']} at ctx = L = {L} is not an extension (scale 1)")
        for j, c in enumerate(ext["checkpoints"]):
            if c > ext["steps"]:
                fail(f"{key}.checkpoints[{j}]", f"checkpoint step {c} is beyond the {ext['steps']} training steps")
        if ext["steps"] not in ext["checkpoints"]:
            fail(f"{key}.checkpoints", f"must include the final step {ext['steps']}")
        if ext["steps"] == 0 and m.fine_tuning == "required":
            fail(f"{key}.steps", f"{ext['method']} without fine-tuning is the base model: use a method None row"
                 if m.control or m.name == "FT" else f"{ext['method']} is only defined with fine-tuning")
        if ext["steps"] > 0 and m.fine_tuning == "none":
            fail(f"{key}.steps", f"{ext['method']} is an inference-time method: it is not fine-tuned (steps: 0)")
        mix = ext.get("mixture", "corpus")
        if mix != "corpus" and mix not in cfg.get("finetune_mixtures", {}):
            fail(f"{key}.mixture", f"unknown mixture {mix!r}: corpus or one of finetune_mixtures "
                 f"{sorted(cfg.get('finetune_mixtures', {}))}")
        if mix != "corpus" and ext["steps"] == 0:
            fail(f"{key}.mixture", "an extension without fine-tuning (steps: 0) reads no fine-tuning data")
        for j, name in enumerate(ext.get("data", [])):
            if name not in datasets:
                fail(f"{key}.data[{j}]", f"unknown dataset {name!r}")
        ident = (ext["size"], targets.extension_name(ext))
        if ident in seen:
            fail(key, f"duplicate extension {ident} (give a variant its own tag)")
        seen.add(ident)
        hp = targets.train_hparams(cfg, ext)
        ranks = sizing.train_ranks(cfg, ext)
        if hp["global_batch"] % (hp["micro_batch"] * ranks):
            fail(f"{key}", f"global batch {hp['global_batch']} is not a multiple of micro batch {hp['micro_batch']}"
                  f" x {ranks} ranks (train_nodes x GPUs or processes per node)")
        for name in ext.get("data", cfg["finetune_data"]):
            if "train" not in datasets[name].get("hub", {}).get("splits", {"train": None}):
                fail(f"{key}.data", f"dataset {name!r} has no train split to fine-tune on")
        job = sizing.train_job(cfg, ext)
        if job["exclusive"] and not job["mem_mb"]:
            fail(f"{key}.resources.train_full_node", "a full-node job needs cluster.node_mem_mb (memory per node)")
        if job["srun"] and job["procs_per_node"] == 1 and job["nodes"] == 1:
            fail(f"{key}.resources.train_launch", "the srun launch on one node needs at least 2 ranks per node "
                  "(SLURM's mpi jobs have more than one task)")
    for size, c in sizes.items():
        if "tokenizer" not in c:
            continue
        shared = [s for s in sizes if targets.tokenizer_name(cfg, s) == c["tokenizer"]]
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
    for name, block in (("perplexity", ppl), ("ruler", cfg.get("ruler", {}))):  # the sharded tasks' blocks
        if "shards" in block and "shard_hours" in block:
            fail(f"{name}.shards", "set either shards (a fixed number per job) or shard_hours (sized from the cost "
                 "plan), not both")
        for size in sizes if "shard_hours" in block else ():
            limit = sizing.eval_job(cfg, size)["runtime"] / 60
            if block["shard_hours"] > limit:
                fail(f"{name}.shard_hours", f"{block['shard_hours']} h is longer than the {limit:g} h an evaluation "
                     f"job of {size} may run (sizes.{size}.resources.eval_runtime, cluster.time_limit_min)")
    for name, spec in cfg["tables"].items():
        kind = kinds.kind(spec)
        forms = set(spec.get("tolerance") or {}) - set(kind.tolerances)
        if forms:
            fail(f"tables.{name}.tolerance", f"a {spec['kind']} table is judged by {' or '.join(kind.tolerances)}, "
                 f"not {', '.join(sorted(forms))}")
        kind.validate(cfg, name, spec)
    paper = cfg.get("audit", {}).get("paper")
    if paper and not (ROOT / paper).is_file():
        fail("audit.paper", f"{paper}: no such file (the paper's cells, e.g. resources/paper/tables.csv)")
    for i, ext in enumerate(cfg["extensions"]):
        if ext["ctx"] not in windows:
            fail(f"extensions[{i}].ctx", f"{ext['ctx']} is not one of perplexity.windows {windows}")
    for w in windows:
        if not any(w <= m for m in kinds.model_windows(cfg)):
            fail("perplexity.windows",
                 f"evaluation window {w} exceeds every model's window ({max(kinds.model_windows(cfg))})")
    for name, d in datasets.items():
        ev = d.get("eval") or {}
        if ev.get("style") == "proofpile":
            used = max(kinds.model_windows(cfg))
            if ev["doc_tokens"] < used:
                fail(f"datasets.{name}.eval.doc_tokens",
                     f"{ev['doc_tokens']} is shorter than the largest evaluation window {used}")
    for name, b in targets.built_benchmarks(cfg).items():
        if b["dataset"] not in datasets:
            fail(f"benchmarks.tasks.{name}.build.dataset", f"unknown dataset {b['dataset']!r}")
        if datasets[b["dataset"]]["source"] == "hub" and "test" not in datasets[b["dataset"]]["hub"]["splits"]:
            fail(f"benchmarks.tasks.{name}.build.dataset", f"dataset {b['dataset']!r} has no test split to build from")
        if b.get("context_tokens", 64) + 16 > targets.benchmark_window(cfg):
            fail(f"benchmarks.tasks.{name}.build.context_tokens", f"{b.get('context_tokens', 64)} context tokens and "
                 f"an option do not fit the benchmark window {targets.benchmark_window(cfg)}")
    c = sizing.cluster(cfg)
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
    check_time(cfg)  # an evaluation job the cluster would stop at its time limit, every time
    check_memory(cfg)  # last (it reads what the checks above made sure of): a GPU job that cannot fit its GPU


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


# ------------------------------------------------------------------------------------------------ cluster


# -------------------------------------------------------------------------------------------------- tables


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


