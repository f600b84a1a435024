# Config validation and input functions: every path of the DAG is computed here, from the config alone.
import json
import shlex
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from pi_repro import METHODS  # noqa: E402
from pi_repro import config as pcfg  # noqa: E402
from pi_repro import cost  # noqa: E402
from pi_repro import kinds  # noqa: E402
from pi_repro import sizing  # noqa: E402
from pi_repro import summarization  # noqa: E402
from pi_repro import targets  # noqa: E402
from pi_repro import preflight  # noqa: E402
from pi_repro import ruler  # noqa: E402
from pi_repro.kinds import KINDS  # noqa: E402
from pi_repro.tasks import TASKS, gpu_rules  # noqa: E402
from pi_repro.summarization import protocol_slice as summarization_slice  # noqa: E402
from pi_repro.summarization import protocol as summarization_protocol  # noqa: E402

pcfg.validate(config)  # stops naming the key before any job is scheduled; merges a config that `extends` another

RUN = config["run"]
R = f"results/{RUN}"
L = config["base_window"]
SIZES = list(config["sizes"])
TOKENIZERS = targets.tokenizers(config)
DATASETS = list(config["datasets"])


CONFIG_SHA256 = targets.config_digest(config)  # of what can change a result (not resources, not a local file's path)

# Every job's shell knows its run folder and the config's digest: the entry points record their provenance there
# (pi_repro.provenance; the audit reads it). Bash's strict mode is Snakemake's own default prefix.
shell.prefix(f"set -euo pipefail; export PI_RUN_DIR={R} PI_CONFIG_SHA256={CONFIG_SHA256}; ")

TABLES = list(config["tables"])
PASSKEY_DATASET = TASKS["passkey"].dataset
RULER_DATASET = TASKS["ruler"].dataset
# the pinned downloads of the ruler tables' tasks (essays, NLTK's punkt_tab, SQuAD, HotpotQA): name -> file, url, sha256
RULER_SOURCES = ruler.sources(targets.ruler_protocol(config)["tasks"], config.get("ruler", {}).get("sources")) \
    if any(c[0] == "ruler" for t in TABLES for c in kinds.table_records(config, t)) else {}
RULER_DATA = f"{R}/data/ruler"
BENCH_DATASET = TASKS["bench"].dataset
PLUGINS = ",".join(config.get("plugins", []))  # table kinds of the config's plugin files (pi_repro.kinds)
BENCH_CACHE = f"{R}/data/benchmarks/hf-datasets"  # the harness tasks' hub datasets (rule fetch_benchmarks)
SUMMARIZATION = summarization_protocol(config)  # Table 6's protocol: the config's block over the paper's
EXT = rf"({'|'.join(METHODS)})-\d+(-[a-z0-9]+)?"


wildcard_constraints:
    run=RUN,
    size="|".join(SIZES),
    tok="|".join(TOKENIZERS),
    dataset="|".join(DATASETS),
    ext=EXT,
    step=r"\d+",
    window=r"\d+",
    shard=r"\d+",
    shards=r"\d+",
    rfile="|".join(re.escape(s["file"]) for s in RULER_SOURCES.values()) or "no-file",
    task="|".join(targets.built_benchmarks(config)) or "no-task",
    model=rf"base|{EXT}/step\d+",
    table="|".join(TABLES) or "no-table",


def size_cfg(w):
    return config["sizes"][w.size]


def ext_cfg(w):
    ext = targets.extension_by_name(config, w.size, w.ext)
    if ext is None:
        raise ValueError(f"no extension {w.size} {w.ext} in the config")
    return ext


# ---------------------------------------------------------------------------------------------- resources
# From the config alone (pi_repro.config: train_job, eval_job, data_job; `snakemake cluster_plan` prints them):
# per size / extension `resources` blocks and the `cluster` block. profiles/slurm supplies account, partitions
# and the defaults of the other jobs. A fine-tune on the srun path (several nodes, or train_launch: srun) is an
# `mpi` job: the rule runs once on the first node and srun starts one torchrun per node (scripts/launch.py).
def partition(gpus):
    """The SLURM partition of a job that may ask GPUs. If it does, $PI_SLURM_PARTITION, else
    $PI_SLURM_CPU_PARTITION (the profile's default for all other jobs; downloads go to the transfer partition).
    None where they are not set (no SLURM)."""
    import os

    return os.environ.get("PI_SLURM_PARTITION" if gpus else "PI_SLURM_CPU_PARTITION") or None


def gpu_constraint(gpus):
    """sbatch --constraint of a job that asks GPUs: the config's cluster.gpu_constraint (a GPU type), if any."""
    return sizing.cluster(config).get("gpu_constraint") if gpus else None


def train_ext(w):
    """The extension whose training resources a training job asks: the rule's own (finetune), or for a
    summarization fine-tune the checkpoint's extension (the size's resources for the base model)."""
    return ext_cfg(w) if hasattr(w, "ext") else targets.model_extension(config, w.size, w.model)


def tjob(w):
    return sizing.train_job(config, train_ext(w))


def train_launch_args(w):
    """scripts/launch.py's arguments: ranks, launch path, the stop margin before the job's time limit, and the
    training options (targets.train_options: tracking, resume state), which change no result."""
    j = tjob(w)
    return (f"--nodes {j['nodes']} --gpus-per-node {j['gpus_per_node']} --procs-per-node {j['procs_per_node']}"
            f" --mode {'srun' if j['srun'] else 'auto'} --stop-margin-min {sizing.cluster(config)['stop_margin_min']}"
            + (f" --cpus-per-node {j['cpus_per_node']}" if j["cpus_per_node"] else "")
            + f" --options {as_json(targets.train_options(config))}")


def train_slurm_extra(w):
    j = tjob(w)
    extra = [f"--gpus-per-node={j['gpus_per_node']}"] if j["srun"] and j["gpus_per_node"] else []
    return " ".join(extra + (["--exclusive"] if j["exclusive"] else [])) or None


def train_threads(w):
    """The cores a training job takes from the local scheduler: its resources' train_cpus_per_node, else 2."""
    return tjob(w)["cpus_per_node"] or 2


def train_cpus_per_task(w, threads):
    """CPUs of each SLURM task: one task per node (torchrun launches the ranks), or on the srun path one task
    per rank, sharing the node's CPUs."""
    j = tjob(w)
    per_node = j["cpus_per_node"] or threads
    return max(1, per_node // j["procs_per_node"]) if j["srun"] and j["procs_per_node"] > 1 else per_node


def train_tasks(w):
    """srun path: one task per rank (SLURM's mpi jobs need more than one task); the launcher's own srun then
    starts one torchrun per node with all of the node's CPUs."""
    j = tjob(w)
    if not j["srun"]:
        return {}
    return {"tasks_per_node": j["procs_per_node"]} if j["procs_per_node"] > 1 else {"tasks": j["nodes"]}


# every training job (fine-tunes, summarization fine-tunes): its nodes, GPUs and launch path from tjob
train_resources = dict(
    runtime=lambda w: tjob(w)["runtime"],
    nodes=lambda w: tjob(w)["nodes"],
    cpus_per_task=train_cpus_per_task,
    mem_mb=lambda w: tjob(w)["mem_mb"],
    gpu=lambda w: None if tjob(w)["srun"] else (tjob(w)["gpus"] or None),
    gpus_total=lambda w: tjob(w)["gpus"],
    slurm_partition=lambda w: partition(tjob(w)["gpus"]),
    constraint=lambda w: gpu_constraint(tjob(w)["gpus"]),
    mpi=lambda w: "srun" if tjob(w)["srun"] else None,
    tasks=lambda w: train_tasks(w).get("tasks"),
    tasks_per_node=lambda w: train_tasks(w).get("tasks_per_node"),
    slurm_extra=train_slurm_extra,
)


def one_node_resources(job):
    """The resources of a one-node job from ``job(w)`` (gpus, cpus, mem_mb, runtime): --nodes=1, so SLURM never
    splits its GPUs across nodes."""
    return dict(
        runtime=lambda w: job(w)["runtime"],
        nodes=1,
        gpu=lambda w: job(w)["gpus"] or None,
        gpus_total=lambda w: job(w)["gpus"],
        slurm_partition=lambda w: partition(job(w)["gpus"]),
        constraint=lambda w: gpu_constraint(job(w)["gpus"]),
        cpus_per_task=lambda w, threads: job(w)["cpus"] or threads,
        mem_mb=lambda w: job(w)["mem_mb"],
    )


# every evaluation job: the GPUs of one node (the model is spread over them)
eval_resources = one_node_resources(lambda w: sizing.eval_job(config, w.size))

# sealing a checkpoint (base model, step 0): its probe runs as evaluations load it, on their GPUs where they have any
seal_resources = one_node_resources(lambda w: sizing.seal_job(config, w.size))

# evaluations split into shards (perplexity and ruler blocks: shards / shard_hours): (task, dataset, size, model) -> n
EVAL_SHARDS = cost.eval_shards(config)


def shards(task, w, dataset=None):
    """How many shards checkpoint ``w``'s ``task`` job on ``dataset`` (default: the wildcard's) runs as (1: whole)."""
    return EVAL_SHARDS.get((task, dataset or w.dataset, w.size, w.model), 1)


def shard_records(task, w, dataset=None):
    n = shards(task, w, dataset)
    return [f"{R}/eval/{task}/{dataset or w.dataset}/{w.size}/{w.model}/shards/{k}-of-{n}.json" for k in range(n)]


def merged_or_whole(task, whole, dataset=None):
    """A sharded task's record rule: its shards' records merged on a CPU where the job is split, else ``whole``
    (a function of the wildcards) evaluated. Returns (args, inputs, resources) for the rule."""
    split = lambda w: shards(task, w, dataset) > 1  # noqa: E731
    args = lambda w: f"--merge {' '.join(shard_records(task, w, dataset))}" if split(w) else whole["args"](w)  # noqa: E731
    inputs = lambda w: {"shards": shard_records(task, w, dataset)} if split(w) else whole["inputs"](w)  # noqa: E731
    resources = one_node_resources(lambda w: sizing.MERGE_JOB if split(w) else sizing.eval_job(config, w.size))
    return args, inputs, resources


# --past P: the records also report the tokens at document positions >= P (perplexity.past)
PPL_PAST = f"--past {config['perplexity']['past']}" if "past" in config["perplexity"] else ""


def ppl_windows(w):
    """Every window the tables need of this checkpoint's perplexity on this dataset (one job evaluates them all)."""
    return ",".join(map(str, kinds.eval_windows(config, "ppl", w.dataset, w.size, w.model)))


def ppl_eval_args(w):
    """perplexity.py's arguments to evaluate checkpoint ``w`` (the whole job, or one shard of it)."""
    p = config["perplexity"]
    return (f"--model {R}/models/{w.size}/{w.model} --docs {tokenized(w.dataset, w.size, 'eval.npz')}"
            f" --windows {ppl_windows(w)} --stride {p['stride']} --batch-size {p.get('batch_size', 8)}"
            f" --coords {eval_params(w, 'ppl')} {PPL_PAST}"
            + ("" if targets.perplexity_protocol(config) == "sliding" else " --protocol truncated"))


def ppl_eval_inputs(w):
    """An evaluation (or shard) reads the checkpoint and the documents."""
    return {"model": model_input(w), "docs": tokenized(w.dataset, w.size, "eval.npz")}


# the perplexity record's job: an evaluation, or (sharded) the CPU job that merges its shards
perplexity_args, perplexity_inputs, perplexity_resources = merged_or_whole(
    "ppl", {"args": ppl_eval_args, "inputs": ppl_eval_inputs})


def ruler_eval_args(w):
    """ruler.py's arguments to evaluate checkpoint ``w`` (the whole job, or one shard of it)."""
    p = targets.ruler_protocol(config)
    lengths = kinds.eval_windows(config, "ruler", RULER_DATASET, w.size, w.model)
    data = f" --data {RULER_DATA} --sources {as_json(RULER_SOURCES)}" if RULER_SOURCES else ""
    return (f"--model {R}/models/{w.size}/{w.model} --tasks {','.join(p['tasks'])}"
            f" --lengths {','.join(map(str, lengths))} --samples {p['samples']} --batch-size {p['batch_size']}"
            f" --base-window {L} --seed {config['seed']} --coords {eval_params(w, 'ruler', RULER_DATASET)}{data}")


def ruler_figure_threshold():
    """The ruler figure's threshold: the ruler tables' own where they share one (else each size's base mean at L)."""
    given = {spec.get("threshold") for spec in config["tables"].values() if spec["kind"] == "ruler"}
    return f"--threshold {given.pop()}" if len(given) == 1 and None not in given else ""


def ruler_data_files():
    return [f"{RULER_DATA}/{s['file']}" for s in RULER_SOURCES.values()]


def ruler_eval_inputs(w):
    """A RULER evaluation (or shard) reads the checkpoint and the downloads its tasks need."""
    return {"model": model_input(w), "data": ruler_data_files()}


# the RULER record's job: an evaluation, or (sharded) the CPU job that merges its shards
ruler_args, ruler_inputs, ruler_resources = merged_or_whole(
    "ruler", {"args": ruler_eval_args, "inputs": ruler_eval_inputs}, RULER_DATASET)


def as_json(obj):
    """A config value as one shell word (scripts read it with json.loads)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def untracked(fn):
    """A param that Snakemake does not compare when it decides what to rerun, for a value whose content another
    param pins (a local file's path: its sha256 is compared). Snakemake leaves out of its params trigger every param
    function that takes the job's ``input``: this one takes it and ignores it."""
    return lambda wildcards, input: fn(wildcards)


# ------------------------------------------------------------------------------------------------- models
def base_dir(size):
    return f"{R}/models/{size}/base"


def size_tokenizer_dir(size):
    """The tokenizer travels with the base model; a base model pretrained here has its tokenizer trained first."""
    if config["sizes"][size]["base"]["source"] == "pretrain":
        return f"{R}/models/{size}/tokenizer"
    return base_dir(size)


def tokenizer_dir(w):
    return size_tokenizer_dir(w.size)


def tok_size(w):
    """The size whose tokenizer (and CPU resources) a tokenization job (wildcard ``tok``) uses."""
    return targets.tokenizer_size(config, w.tok)


def tokenized(dataset, size, what):
    """A dataset tokenized for ``size`` (its tokenizer's data, shared with the sizes that have the same one)."""
    return f"{R}/data/{dataset}/{targets.tokenizer_name(config, size)}/{what}"


def model_input(w):
    """The file(s) that stand for checkpoint ``w.model`` of size ``w.size`` in the DAG."""
    if w.model == "base":
        return base_dir(w.size)
    name, step = w.model.split("/")
    if step == "step0":
        return f"{R}/models/{w.size}/{name}/step0"
    return f"{R}/models/{w.size}/{name}/finetune.json"


def finetune_data(w, what="train.npy"):
    """The packed training tokens of an extension's fine-tuning data (``what="train.idx.npz"``: their indexes)."""
    names = ext_cfg(w).get("data", config["finetune_data"])
    return [tokenized(d, w.size, what) for d in names]


def finetune_index(w):
    return finetune_data(w, "train.idx.npz")


def pretrain_data(w, what="train.npy"):
    return [tokenized(d, w.size, what) for d in config["finetune_data"]]


def base_model_inputs(w):
    """A base model pretrained here needs its tokenizer and the tokenized training corpora; hub weights their
    downloaded snapshot (rule download_model); shipped weights nothing."""
    source = size_cfg(w)["base"]["source"]
    if source == "pretrain":
        return {"tokenizer": tokenizer_dir(w), "data": pretrain_data(w), "index": pretrain_data(w, "train.idx.npz")}
    if source == "hub":
        return {"download": f"{R}/models/{w.size}/download"}
    return {}


def downloads():
    """Everything fetched from the internet (the hub, RULER's pinned data): run `snakemake downloads` where there is
    internet."""
    hub = [f"{R}/models/{s}/download" for s, c in config["sizes"].items() if c["base"]["source"] == "hub"]
    bench = [f"{R}/data/benchmarks/fetch.json"] if targets.harness_benchmarks(config) else []
    return hub + bench + [f"{R}/data/{d}/corpus.jsonl.gz" for d, c in config["datasets"].items() if c["source"] == "hub"] \
        + ruler_data_files()


def eval_record(task, dataset="{dataset}", size="{size}", model="{model}"):
    """An evaluation record's path (pattern with wildcards by default): pi_repro.config.eval_path."""
    return targets.eval_path(R, task, dataset, size, model)


def eval_params(w, task, dataset=None):
    """What an evaluation job writes into its record besides its results: its task, dataset and coordinates."""
    return as_json({"task": task, "dataset": dataset or w.dataset, **targets.model_coords(config, w.size, w.model)})


def benchmark_task_files(w):
    """The task files of the benchmarks built here (their items and definitions), for this size's tokenizer."""
    return [f"{R}/data/benchmarks/{w.size}/{t}.{ext}" for t in targets.built_benchmarks(config) for ext in ("jsonl", "yaml")]


def benchmark_includes(w):
    """Folders of task definitions the harness reads besides its own: the built tasks', the config's include."""
    out = [f"{R}/data/benchmarks/{w.size}"] if targets.built_benchmarks(config) else []
    inc = config.get("benchmarks", {}).get("include")
    return out + ([inc] if inc else [])


# ---------------------------------------------------------------------------------------------- preflight
# Before any job: the local files the config names are there and are what their sha256 says; the run's token
# files are whole (pi_repro.preflight). A damaged file stops the run here, before Snakemake deletes anything.
if not workflow.remote_exec:  # the main process checks; a cluster job step (which parses this file again) does not
    preflight.check(config, R, {t: Path(size_tokenizer_dir(targets.tokenizer_size(config, t))) for t in TOKENIZERS},
                    {s: targets.tokenizer_name(config, s) for s in SIZES},
                    preflight.Sha256Cache(Path(".snakemake/pi-repro-sha256.json")))


# ---------------------------------------------------------------------------------------------- cluster
def unset_profile_variables():
    """(where, resource, variable) for each resource of the profile that reads an environment variable that is
    not set (e.g. the SLURM profile's $PI_SLURM_ACCOUNT): sbatch would be handed the placeholder itself."""
    import os
    import re

    rs = workflow.resource_settings
    sources = [("default-resources", rs.default_resources or {})]
    sources += [(f"set-resources.{r}", m) for r, m in (rs.overwrite_resources or {}).items()]
    out = []
    for where, mapping in sources:
        for key, res in mapping.items():
            raw = getattr(res, "raw", res)
            for var in re.findall(r"\$\{?([A-Za-z_]\w*)", raw if isinstance(raw, str) else ""):
                if not os.environ.get(var):
                    out.append((where, key, var))
    return out


def check_cluster_settings():
    """Before the first submission to SLURM: every placeholder of the profile is set (a job submitted with the
    account "$PI_SLURM_ACCOUNT" fails in the queue, or waits there)."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm" or workflow.remote_exec:
        return
    missing = unset_profile_variables()
    if missing:
        names = sorted({v for _, _, v in missing})
        where = "; ".join(f"{w}.{k} reads ${v}" for w, k, v in missing[:6])
        raise targets.ConfigError(f"cluster settings: set {', '.join(names)} in the environment before submitting "
                               f"({where}; see profiles/slurm and README 'Running the paper on a cluster')")
    import os

    gpu_jobs = sorted({j.rule.name for j in workflow.dag.needrun_jobs() if j.resources.get("gpus_total")})
    if gpu_jobs and not os.environ.get("PI_SLURM_PARTITION"):
        raise targets.ConfigError(f"cluster settings: set PI_SLURM_PARTITION (the GPU partition) in the environment: "
                               f"jobs of rules {', '.join(gpu_jobs)} ask GPUs (README 'Running the paper on a cluster')")
    refused = unsatisfiable_jobs()
    if refused:
        lines = "\n".join(f"  {name} ({n} jobs): {why}\n    {call}" for (name, call), (n, why) in refused.items())
        raise targets.ConfigError("cluster settings: SLURM would never start these jobs (sbatch --test-only refuses "
                               f"them; they would wait in the queue forever):\n{lines}\nAdjust the config's "
                               "resources blocks or the profile (`snakemake cluster_plan` prints what each job asks)")


def unsatisfiable_jobs():
    """The jobs to run whose sbatch request SLURM refuses (`sbatch --test-only`, one call per distinct request,
    built as the SLURM executor builds it): {(rule, request): (jobs, SLURM's reason)}."""
    import os
    import shlex
    import subprocess

    try:
        from snakemake_executor_plugin_slurm.submit_string import get_submit_command
        from snakemake_executor_plugin_slurm.utils import set_gres_string
    except ImportError:
        return {}
    requests = {}
    for job in workflow.dag.needrun_jobs():
        if job.is_local:
            continue
        res = job.resources
        params = {"run_uuid": "check", "slurm_logfile": os.devnull, "comment_str": job.rule.name,
                  "account": f"-A {shlex.quote(str(res.get('slurm_account')))}" if res.get("slurm_account") else "",
                  "partition": f"-p {shlex.quote(str(res.get('slurm_partition')))}" if res.get("slurm_partition") else "",
                  "workdir": None}
        call = get_submit_command(job, params, settings=None) + set_gres_string(job)
        call = call.replace("sbatch --parsable", "sbatch --test-only", 1) + " --wrap true"
        key = (job.rule.name, call)
        requests[key] = requests.get(key, 0) + 1
    refused = {}
    for (rule, call), n in requests.items():
        p = subprocess.run(call, shell=True, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            reason = (p.stderr.strip().splitlines() or ["refused"])[-1]
            refused[(rule, call)] = (n, reason)
    return refused


# -------------------------------------------------------------------------------------------------- audit
AUDIT_GPU_RULES = gpu_rules()  # the rules that can ask GPUs (pi_repro.tasks): the models' and each task's


def rule_scripts():
    """Rule name -> the entry point that records its jobs (the last script its shell command runs)."""
    import re

    out = {}
    for r in workflow.rules:
        found = re.findall(r"workflow/scripts/(\w+)\.py", r.shellcmd or "")
        if found:
            out[r.name] = found[-1]
    return out


def check_audit_rules():
    """The audit re-executes jobs of rules named in the config: each must exist (called once all rules are read)."""
    known = rule_scripts()
    for section in ("jobs", "tolerance"):
        for name in targets.audit(config)["determinism"][section]:
            if name not in known:
                raise targets.ConfigError(f"config error at audit.determinism.{section}.{name}: no rule {name!r} with an"
                                       f" entry point (rules: {', '.join(sorted(known))})")


def snakemake_invocation():
    """The config files and --config values of this invocation: `audit.py verify` re-reads them to name the
    artefacts made with other settings than the config now gives (pi_repro.audit.stale_settings)."""
    cs = workflow.config_settings
    return {"configfiles": [str(f) for f in cs.configfiles or []], "config": dict(cs.config or {})}


def audit_job():
    """The audit's resources: those of an evaluation job of the smallest size when it re-executes a GPU rule's
    jobs (it picks the cheapest, in practice the smallest size's), else none."""
    on_gpu = any(n and r in AUDIT_GPU_RULES for r, n in targets.audit(config)["determinism"]["jobs"].items())
    job = sizing.eval_job(config, SIZES[0])
    return dict(job, gpus=job["gpus"] if on_gpu else 0)


# ------------------------------------------------------------------------------------------------ targets
def table_inputs(table):
    """The evaluation records a table reads (one per checkpoint; each holds all of that checkpoint's windows), and
    those of no checkpoint its kind adds (a summarization table's LEAD baseline)."""
    if table not in config["tables"]:
        return []
    spec = config["tables"][table]
    extra = KINDS[spec["kind"]].extra_records(config, spec, R)
    return [eval_record(*r) for r in kinds.table_records(config, table)] + extra


def table_layout(table):
    """What a table's kind lays out from the config beside its records (e.g. Table 5's task order), if anything."""
    spec = config["tables"][table]
    return KINDS[spec["kind"]].layout(config, spec)


def quoted_input(table):
    """The file of published cells a table shows beside its own rows (its `quoted` key), if any."""
    q = config["tables"].get(table, {}).get("quoted")
    return [q] if q else []


def table_outputs(table):
    return {ext: f"{R}/tables/{table}.{ext}" for ext in ("md", "csv", "tex", "html")}


def figure_inputs(figure):
    """The records of every table whose kind draws ``figure`` (pi_repro.kinds: its ``figure``)."""
    tables = [t for t, spec in config["tables"].items() if KINDS[spec["kind"]].figure == figure]
    return list(dict.fromkeys(p for t in tables for p in table_inputs(t)))


def audit_targets():
    """What the audit accounts for: every target of `all` but the audit's own outputs."""
    out = [f for t in TABLES for f in table_outputs(t).values()]
    kinds = [KINDS[spec["kind"]] for spec in config["tables"].values()]
    out += [f"{R}/figures/{f}.png" for f in dict.fromkeys(k.figure for k in kinds if k.figure)]
    out += [f"{R}/figures/figure2.png", f"{R}/findings.md"]
    # every fine-tune the config lists (including variants no table of this issue reads yet, e.g. Table 5's
    # RedPajama model) and every dataset it names
    out += [f"{R}/models/{e['size']}/{targets.extension_name(e)}/finetune.json" for e in targets.trained(config)]
    out += [f"{R}/data/{d}/corpus.jsonl.gz" for d in DATASETS]
    return out


def all_targets():
    return audit_targets() + [f"{R}/audit/summary.md"]
