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
    ext=r"(PI|FT|CT)-\d+(-[a-z0-9]+)?",
    step=r"\d+",
    window=r"\d+",
    model=r"base|(PI|FT|CT)-\d+(-[a-z0-9]+)?/step\d+",


def size_cfg(w):
    return config["sizes"][w.size]


def ext_cfg(w):
    ext = pcfg.extension_by_name(config, w.size, w.ext)
    if ext is None:
        raise ValueError(f"no extension {w.size} {w.ext} in the config")
    return ext


# ---------------------------------------------------------------------------------------------- resources
# Per size (and per extension) from the config's `resources` blocks; profiles/slurm supplies account,
# partition and defaults. Multi-node training is an "mpi"-style job: the rule runs once on the first node and
# srun starts one torchrun launcher per node (workflow/scripts/launch.py).
def res(w, key, default):
    """A resource of the job's size, or of its extension where the job has one."""
    ext = ext_cfg(w) if hasattr(w, "ext") else None
    return pcfg.resources(config, w.size, ext).get(key, default)


def train_nodes(w):
    return res(w, "train_nodes", 1)


def train_gpus(w):
    return res(w, "train_gpus_per_node", 0)


def train_procs(w):
    return train_gpus(w) or res(w, "train_procs_per_node", 1)


def multi_node(w):
    return train_nodes(w) > 1


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
    # every fine-tune the config lists (including variants no table of this issue reads yet, e.g. Table 5's
    # RedPajama model) and every dataset it names
    out += [f"{R}/models/{e['size']}/{pcfg.extension_name(e)}/finetune.json" for e in config["extensions"]]
    out += [f"{R}/data/{d}/corpus.jsonl.gz" for d in DATASETS]
    return out
