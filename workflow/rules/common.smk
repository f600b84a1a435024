# Config validation and input functions: every path of the DAG is computed here, from the config alone.
import json
import shlex
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from pi_repro import config as pcfg  # noqa: E402

pcfg.validate(config)  # stops with a message naming the key before any job is scheduled

RUN = config["run"]
R = f"results/{RUN}"
L = config["base_window"]
SIZES = list(config["sizes"])
DATASETS = list(config["datasets"])


wildcard_constraints:
    run=RUN,
    size="|".join(SIZES),
    dataset="|".join(DATASETS),
    method="PI|FT|CT",
    ctx=r"\d+",
    step=r"\d+",
    window=r"\d+",
    model=r"base|(PI|FT|CT)-\d+/step\d+",


def size_cfg(w):
    return config["sizes"][w.size]


def ext_cfg(w):
    ext = pcfg.find_extension(config, w.size, w.method, int(w.ctx))
    if ext is None:
        raise ValueError(f"no extension {w.size} {w.method}-{w.ctx} in the config")
    return ext


def as_json(obj):
    """A config value as one shell word (scripts read it with json.loads)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


# ------------------------------------------------------------------------------------------------- models
def base_dir(size):
    return f"{R}/models/{size}/base"


def tokenizer_dir(w):
    """The tokenizer travels with the base model; a base model pretrained here has its tokenizer trained first."""
    if config["sizes"][w.size]["base"]["source"] == "pretrain":
        return f"{R}/models/{w.size}/tokenizer"
    return base_dir(w.size)


def model_input(w):
    """The file(s) that stand for checkpoint ``w.model`` of size ``w.size`` in the DAG."""
    if w.model == "base":
        return base_dir(w.size)
    name, step = w.model.split("/")
    if step == "step0":
        return f"{R}/models/{w.size}/{name}/step0"
    return f"{R}/models/{w.size}/{name}/finetune.json"


def finetune_data(w):
    names = ext_cfg(w).get("data", config["finetune_data"])
    return expand(f"{R}/data/{{dataset}}/{w.size}/train.npz", dataset=names)


def pretrain_data(w):
    return expand(f"{R}/data/{{dataset}}/{w.size}/train.npz", dataset=config["finetune_data"])


def base_model_inputs(w):
    """Only a base model pretrained here has inputs: its tokenizer and the tokenized training corpora."""
    if size_cfg(w)["base"]["source"] == "pretrain":
        return {"tokenizer": tokenizer_dir(w), "data": pretrain_data(w)}
    return {}


def size_resources(w, key, default):
    return config["sizes"][w.size].get("resources", {}).get(key, default)


# ------------------------------------------------------------------------------------------------ targets
def table_inputs(table):
    """One perplexity record per model that the table needs (each holds all of that model's windows)."""
    if table not in config["tables"]:
        return []
    dataset, cells = pcfg.table_cells(config, table)
    models = dict.fromkeys((s, m) for s, m, _ in cells)
    return [pcfg.ppl_path(RUN, dataset, s, m) for s, m in models]


def table_outputs(table):
    return {ext: f"{R}/tables/{table}.{ext}" for ext in ("md", "csv", "tex")}


def all_targets():
    out = []
    for t in ("table1", "table2", "table3"):
        if t in config["tables"]:
            out += list(table_outputs(t).values())
    out += [f"{R}/figures/ppl_vs_window.png", f"{R}/findings.md"]
    return out
