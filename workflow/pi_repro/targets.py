"""The expansion of a validated configuration into names, paths and settings: what every rule, script and table
derives from the config alone (its extensions and their checkpoints, records' paths and coordinates, the
hyperparameters and protocols with their defaults, the digest of what can change a result). The bottom of the
configuration modules: ``config`` (schema and checks), ``kinds`` (tables), ``sizing`` (jobs' resources) and
``cost`` (plans) build on it; it imports none of them.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

from .io import model_dir_digest

ROOT = Path(__file__).resolve().parents[2]  # the repository: config paths are relative to it


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def fail(key: str, msg: str):
    raise ConfigError(f"config error at {key}: {msg}")


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


def model_extension(cfg: dict, size: str, model: str) -> dict:
    """The extension a checkpoint ``model`` (``base`` or ``{name}/step{N}``) of ``size`` belongs to; for the base
    model ``{"size": size}``, which asks the size's resources (train_job, resources)."""
    return {"size": size} if model == "base" else extension_by_name(cfg, size, model.split("/")[0])


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
        spec["sha256sums"] = model_dir_digest(spec.pop("path"))
    return spec


def fetch_spec(cfg: dict, dataset: str) -> dict:
    """What decides a dataset's fetched content (rule fetch_dataset's param): its source and pinned revision or
    sha256; not its evaluation block (rule eval_docs) nor a local file's path (its sha256 stands for its bytes)."""
    return {k: v for k, v in cfg["datasets"][dataset].items() if k not in ("eval", "path")}


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


def table_title(name: str, spec: dict) -> str:
    return spec.get("title") or re.sub(r"^table(\d+)$", r"Table \1", name)


def perplexity_protocol(cfg: dict) -> str:
    """``perplexity.protocol``: ``sliding`` (the paper's, default) or ``truncated`` (YaRN's; pi_repro.perplexity)."""
    return cfg["perplexity"].get("protocol", "sliding")


PASSKEY_DEFAULTS = {"num_k": 32, "trials": 10, "threshold": 0.2, "intro": True, "batch_size": 8}


def passkey_protocol(cfg: dict) -> dict:
    """The config's ``passkey`` block with the paper's protocol as defaults."""
    return {**PASSKEY_DEFAULTS, **cfg.get("passkey", {})}


RULER_DEFAULTS = {"samples": 500, "batch_size": 1}
RULER_ANSWER = 128  # room for the answer past a RULER prompt's length: the longest a task generates (niah's)
RULER_TASKS = ("niah_single_1", "niah_multikey_2", "niah_multikey_3", "ruler_vt", "ruler_cwe", "ruler_fwe")


def ruler_protocol(cfg: dict) -> dict:
    """The config's ``ruler`` block with RULER's defaults (500 prompts per task and length; the synthetic tasks,
    pi_repro.ruler.SYNTHETIC)."""
    return {**RULER_DEFAULTS, "tasks": list(RULER_TASKS), **cfg.get("ruler", {})}


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


def eval_path(run_dir: str, task: str, dataset: str, size: str, model: str) -> str:
    """The one path of an evaluation record (rule outputs and table inputs both come from here)."""
    return f"{run_dir}/eval/{task}/{dataset}/{size}/{model}/{task}.json"


def shape(cfg: dict, size: str) -> SimpleNamespace:
    """A size's architecture, as perf.flops_per_token reads it: the config's ``sizes.<size>.shape`` (hub weights),
    the ``arch`` it is pretrained with, or the shipped checkpoint's config.json."""
    s = cfg["sizes"][size]
    if "shape" in s:
        a = s["shape"]
    elif s["base"]["source"] == "pretrain":
        a = dict(s["base"]["arch"], vocab_size=s["base"]["vocab_size"])
    elif s["base"]["source"] == "local":
        j = json.loads((ROOT / s["base"]["path"] / "config.json").read_text())
        a = {"hidden_size": j["hidden_size"], "intermediate_size": j["intermediate_size"],
             "num_layers": j["num_hidden_layers"], "num_heads": j["num_attention_heads"],
             "num_kv_heads": j.get("num_key_value_heads"), "vocab_size": j["vocab_size"]}
    else:
        raise ConfigError(f"config error at sizes.{size}.shape: the plan needs the architecture of hub weights "
                            "(hidden_size, intermediate_size, num_layers, num_heads, vocab_size)")
    return SimpleNamespace(hidden_size=a["hidden_size"], intermediate_size=a["intermediate_size"],
                           num_hidden_layers=a["num_layers"], num_attention_heads=a["num_heads"],
                           num_key_value_heads=a.get("num_kv_heads") or a["num_heads"], head_dim=None,
                           vocab_size=a["vocab_size"])
