"""config/paper.yaml: its DAG (dry run) has exactly one job per cell of the paper's tables, no more, no less,
with the paper's hyperparameters and GPU counts; the user's SLURM command finds the profile and this config."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from conftest import smoke_config  # noqa: E402
from pi_repro import config as pcfg  # noqa: E402
from pi_repro import cost, sizing, targets  # noqa: E402

PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())

# Rows of the paper's tables (../shared/paper/reference.md), written out here independently of the config.
TABLE1_ROWS = [  # (size, model ctx, method) -- Table 2 has the same rows
    ("7B", 2048, "None"), ("7B", 8192, "FT"), ("7B", 8192, "PI"), ("7B", 16384, "PI"), ("7B", 32768, "PI"),
    ("13B", 2048, "None"), ("13B", 8192, "FT"), ("13B", 8192, "PI"), ("13B", 16384, "PI"), ("13B", 32768, "PI"),
    ("33B", 2048, "None"), ("33B", 8192, "FT"), ("33B", 8192, "PI"), ("33B", 16384, "PI"),
    ("65B", 2048, "None"), ("65B", 8192, "PI")]
TABLE3_ROWS = {("7B", 8192): [0, 200, 400, 600, 800, 1000], ("7B", 16384): [0, 200, 400, 600, 800, 1000]}
TABLE4_ROWS = {  # (size, method, ctx) -> fine-tuning steps with a passkey cell
    ("7B", "FT", 8192): [200, 400, 600, 800, 1000, 10000], ("33B", "FT", 8192): [200, 400, 600, 800, 1000],
    ("7B", "PI", 8192): [200, 400, 600, 800, 1000], ("7B", "PI", 16384): [200, 400, 600, 800, 1000],
    ("7B", "PI", 32768): [200, 400, 600, 800, 1000], ("33B", "PI", 8192): [200, 400, 600, 800, 1000],
    ("33B", "PI", 16384): [200, 400, 600, 800, 1000]}
TABLE5_VARIANTS = [("7B", "PI", 8192, "redpajama")]  # fine-tuned on RedPajama instead of the Pile
TABLE5_ROWS = [  # (size, model ctx, fine-tune on) of the paper's Table 5
    ("7B", 2048, "None"), ("7B", 8192, "Pile"), ("7B", 16384, "Pile"), ("7B", 32768, "Pile"),
    ("7B", 8192, "RedPajama"), ("33B", 2048, "None"), ("33B", 8192, "Pile")]
TABLE5_TASKS = ["BoolQ", "PIQA", "Race-M", "Race-H", "WinoGrande"]
STEPS = {"PI": 1000, "FT": 10000}


def dry_run(*args):
    p = subprocess.run([sys.executable, "-m", "snakemake", *args, "-n", "--quiet", "rules"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", p.stdout + p.stderr, re.M)}


@pytest.fixture(scope="module")
def counts():
    return dry_run("all", "--configfile", "config/paper.yaml")


def test_paper_config_is_valid():
    pcfg.validate(PAPER)


def test_one_finetune_per_model_of_the_papers_tables(counts):
    tuned = {(s, m, c, None) for s, c, m in TABLE1_ROWS if m != "None"} | {(s, m, c, None) for s, m, c in TABLE4_ROWS}
    tuned |= set(TABLE5_VARIANTS)
    configured = {(e["size"], e["method"], e["ctx"], e.get("tag")) for e in PAPER["extensions"]}
    assert configured == tuned
    assert counts["finetune"] == counts["init_extension"] == len(tuned) == 13
    assert counts["base_model"] == counts["download_model"] == 4


def test_checkpoints_are_the_steps_the_tables_read():
    for e in PAPER["extensions"]:
        read = TABLE4_ROWS.get((e["size"], e["method"], e["ctx"]), []) if not e.get("tag") else []
        want = {STEPS[e["method"]]} | set(read)
        want |= set(TABLE3_ROWS.get((e["size"], e["ctx"]), []) if e["method"] == "PI" and not e.get("tag") else [])
        assert e["steps"] == STEPS[e["method"]] and set(e["checkpoints"]) == want, e


def test_one_perplexity_job_per_checkpoint_of_tables_1_to_3(counts):
    table3_extra = sum(len([s for s in steps if s != STEPS["PI"]]) for steps in TABLE3_ROWS.values())
    assert counts["perplexity"] == 2 * len(TABLE1_ROWS) + table3_extra == 42
    for t in ("findings", "figure_ppl_vs_window"):
        assert counts[t] == 1
    assert counts["table"] == 7  # one job of the wildcard rule per table of the config (table7: RULER)
    assert counts["fetch_dataset"] == 5  # PG19, proof-pile, Pile subset, RedPajama sample, GovReport


# The paper's Tables 1-3 as printed (../shared/paper/reference.md): "x" where the paper has a number, "-" where not.
PAPER_TABLES = {
    "pg19": """
        7B 2048 None x x x x x | 7B 8192 FT x x x - - | 7B 8192 PI x x x - - | 7B 16384 PI x x x x - |
        7B 32768 PI x x x x x | 13B 2048 None x - - - - | 13B 8192 FT x x x - - | 13B 8192 PI x x x - - |
        13B 16384 PI x x x x - | 13B 32768 PI x x x x x | 33B 2048 None x - - - - | 33B 8192 FT x x x - - |
        33B 8192 PI x x x - - | 33B 16384 PI x x x x - | 65B 2048 None x - - - - | 65B 8192 PI x x x - -""",
    "proofpile": """
        7B 2048 None x - - - - | 7B 8192 FT x x x - - | 7B 8192 PI x x x - - | 7B 16384 PI x x x x - |
        7B 32768 PI x x x x x | 13B 2048 None x - - - - | 13B 8192 FT x x x - - | 13B 8192 PI x x x - - |
        13B 16384 PI x x x x - | 13B 32768 PI x x x x x | 33B 2048 None x - - - - | 33B 8192 FT x x x - - |
        33B 8192 PI x x x - - | 33B 16384 PI x x x x - | 65B 2048 None x - - - - | 65B 8192 PI x x x - -""",
}
COLUMNS = [2048, 4096, 8192, 16384, 32768]


def paper_cells() -> set:
    """(dataset, size, checkpoint, window) of every number in the paper's Tables 1-3."""
    cells = set()
    for dataset, text in PAPER_TABLES.items():
        for row in text.split("|"):
            size, ctx, method, *marks = row.split()
            model = "base" if method == "None" else f"{method}-{ctx}/step{STEPS[method]}"
            cells |= {(dataset, size, model, w) for w, mark in zip(COLUMNS, marks) if mark == "x"}
    for (size, ctx), steps in TABLE3_ROWS.items():  # Table 3: PG19 at the extended window
        cells |= {("pg19", size, f"PI-{ctx}/step{n}", ctx) for n in steps}
    return cells


SHARDED = {k[1:]: n for k, n in cost.eval_shards(pcfg.load(ROOT / "config/paper.yaml")).items()
           if n > 1 and k[0] == "ppl"}


def test_long_evaluations_run_as_shards_sized_from_the_plan(counts):
    """The GPU-day evaluations of Tables 1-3 run as shards of at most perplexity.shard_hours (12 h, within the
    24 h an evaluation job asks), in parallel, merged on a CPU; short ones stay one job. The paper's longest,
    13B PI-32768 on PG19 (370 GPU-hours by the plan), is 31 shards; no shard count exceeds the documents. 65B at
    2048 on PG19 runs its 4 GPUs one at a time: 4 shards (before, its time was divided by its GPUs: one job of
    ~37 h planned as 9 h)."""
    cfg = pcfg.load(ROOT / "config/paper.yaml")
    assert counts["perplexity_shard"] == sum(SHARDED.values()) == 294 and len(SHARDED) == 38
    assert SHARDED[("pg19", "13B", "PI-32768/step1000")] == 31 and SHARDED[("pg19", "65B", "base")] == 4
    shards = [r for r in cost.plan(cfg) if r["rule"] == "perplexity_shard"]
    whole = [r for r in cost.plan(cfg) if r["rule"] == "perplexity"]
    assert len(shards) == 294 and max(r["wall_hours"] for r in shards) <= cfg["perplexity"]["shard_hours"]
    assert max(r["wall_hours"] for r in whole) <= cfg["perplexity"]["shard_hours"]  # every job fits 12 h
    assert cfg["perplexity"]["shard_hours"] * 60 <= min(sizing.eval_job(cfg, s)["runtime"] for s in cfg["sizes"])
    assert all(n <= (100 if d == "pg19" else 128) for (d, _, _), n in SHARDED.items())
    out = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/paper.yaml", "-n", "-p",
                          "results/paper/eval/ppl/pg19/13B/PI-32768/step1000/ppl.json"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    merge = out[out.index("rule perplexity:"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", merge).group(1).split(", "))
    assert "gpu" not in res and res["gpus_total"] == "0"  # merging is a CPU job
    assert len(re.findall(r"--shard (\d+) 31 ", out)) == 31 and "--merge" in merge
    shard = out[out.index("rule perplexity_shard:"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", shard).group(1).split(", "))
    assert (res["gpu"], res["nodes"], res["runtime"]) == ("1", "1", "1440")


def test_evaluated_cells_are_exactly_the_papers(counts):
    """Every (dataset, checkpoint, window) the dry-run DAG evaluates, against the paper's tables written out
    above: no cell missing, none extra (e.g. no proof-pile extrapolation of the 7B base model: Table 2 has "-")."""
    p = subprocess.run([sys.executable, "-m", "snakemake", "all", "--configfile", "config/paper.yaml", "-n", "-p"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = re.findall(r"perplexity\.py --model results/paper/models/(\S+?)/(\S+) --docs results/paper/data/(\w+)/\S+"
                      r" --windows ([\d,]+)", p.stdout + p.stderr)  # whole evaluations and shards of one
    assert len({j[:3] for j in jobs}) == counts["perplexity"]  # one record (one job or its shards') per checkpoint
    assert len(jobs) == counts["perplexity"] - len(SHARDED) + counts["perplexity_shard"]
    dag = {(d, size, model, int(w)) for size, model, d, ws in jobs for w in ws.split(",")}
    want = paper_cells()
    assert dag == want, f"missing {sorted(want - dag)}, extra {sorted(dag - want)}"


def planned_commands(target: str) -> str:
    """The dry run of ``target`` on the paper config, with every job's shell command."""
    p = subprocess.run([sys.executable, "-m", "snakemake", target, "--configfile", "config/paper.yaml", "-n", "-p"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout + p.stderr


def test_one_passkey_job_per_checkpoint_of_table_4():
    """`snakemake table4` on the paper config: one passkey job per checkpoint of the paper's Table 4 (written out
    above), each at its own window, on the GPUs of its size; nothing of Tables 1-3."""
    out = planned_commands("table4")
    jobs = re.findall(r"passkey\.py --model results/paper/models/(\S+?)/(\S+)-(\d+)/step(\d+) --windows ([\d,]+)"
                      r" --num-k 32 --trials 10 --threshold 0.2 --intro", out)
    cells = {(size, method, int(ctx), int(step)) for size, method, ctx, step, _ in jobs}
    want = {(size, method, ctx, s) for (size, method, ctx), steps in TABLE4_ROWS.items() for s in steps}
    assert len(jobs) == len(cells) == len(want) == 36
    assert cells == want, f"missing {sorted(want - cells)}, extra {sorted(cells - want)}"
    assert all(ws == ctx for _, _, ctx, _, ws in jobs)  # each at its own window L'
    assert "perplexity.py" not in out and "rule perplexity" not in out
    res = re.findall(r"rule passkey:\n(?:    .*\n)*?    wildcards: size=(\w+), model=\S+\n    resources: (.*)", out)
    assert len(res) == 36
    for size, resources in res:
        want_gpus = PAPER["sizes"][size]["resources"]["eval_gpus"]
        assert f"gpu={want_gpus}" in resources and "nodes=1" in resources, (size, resources)


def test_one_benchmark_job_per_model_of_table_5():
    """`snakemake table5` on the paper config: one benchmark job per model of the paper's Table 5 (written out
    above), at the original window 2048, on the five tasks in the paper's order, reading the datasets fetched by
    fetch_benchmarks offline; nothing of the other tables."""
    out = planned_commands("table5")
    jobs = re.findall(r"HF_DATASETS_OFFLINE=1 python -u workflow/scripts/benchmark.py --model results/paper/models/"
                      r"(\w+)/(\S+) --tasks '(.*?)' --include '(\S*)' --window (\d+) .*? --finetune-data '(\S*)'", out)
    data = {"": "None", "pile": "Pile", "redpajama": "RedPajama"}
    rows = sorted((size, 2048 if m == "base" else int(m.split("-")[1].split("/")[0]), data[d])
                  for size, m, _, _, _, d in jobs)
    assert rows == sorted(TABLE5_ROWS) and len(jobs) == 7
    for _, model, tasks, include, window, _ in jobs:
        assert sorted(lab for _, lab in json.loads(tasks)) == sorted(TABLE5_TASKS) and window == "2048"
        assert model == "base" or model.endswith("/step1000")
        assert "resources/lm_eval_tasks" in include
    assert "fetch_benchmarks" in out and "perplexity.py" not in out and "passkey.py" not in out
    # the jobs take the tasks as a set (a YAML mapping has no order); Table 5 lays them out in the paper's order
    layout = json.loads(re.search(r"make_table.py .*?--layout '(.*?)'", out).group(1))
    labels = {name: t["label"] for name, t in PAPER["benchmarks"]["tasks"].items()}
    assert [labels[n] for n in layout["task_order"]] == TABLE5_TASKS


def test_hyperparameters_and_gpus_are_the_papers():
    for e in PAPER["extensions"]:
        hp = targets.train_hparams(PAPER, e)
        res = sizing.resources(PAPER, e["size"], e)
        gpus = res["train_nodes"] * res["train_gpus_per_node"]
        assert hp["lr"] == (2e-5 if e["size"] in ("7B", "13B") else 1e-5)
        short = e["ctx"] == 8192 and e["size"] in ("7B", "13B", "33B")
        assert (hp["global_batch"], gpus) == ((64, 32) if short else (128, 128)), e
        assert hp["global_batch"] % (hp["micro_batch"] * gpus) == 0  # per-GPU batch x accumulation x GPUs
        assert hp["warmup_steps"] == 20 and hp["warmup_start"] == 0.1 and hp["betas"] == [0.9, 0.95]
        assert hp["weight_decay"] == 0 and hp["deepspeed"] == "config/deepspeed/zero3-bf16.json" and hp["bf16"]
    for d in ("pg19", "proofpile", "pile", "redpajama", "govreport"):
        assert re.fullmatch(r"[0-9a-f]{40}", PAPER["datasets"][d]["hub"]["revision"])
    for size in PAPER["sizes"].values():
        assert re.fullmatch(r"[0-9a-f]{40}", size["base"]["revision"])
    assert PAPER["perplexity"]["stride"] == 256
    assert PAPER["datasets"]["proofpile"]["eval"] == {"style": "proofpile", "num_docs": 128, "doc_tokens": 32768}


def test_training_subset_is_sized_by_the_largest_finetune():
    assert targets.train_tokens_needed(PAPER, "pile") == 10000 * 64 * 8192  # FT-8192: 10000 steps of 64 x 8192
    assert targets.train_tokens_needed(PAPER, "redpajama") == 1000 * 64 * 8192
    assert targets.train_tokens_needed(PAPER, "pg19") == 0


def test_users_literal_slurm_command_runs_the_paper_dag(counts):
    """`snakemake --profile slurm all` at the repository root: the profile is found and it selects this config."""
    assert dry_run("--profile", "slurm", "all") == counts


def test_multi_node_finetune_asks_slurm_for_nodes_and_gpus():
    p = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/paper.yaml", "-n", "-p",
                        "results/paper/models/65B/PI-8192/finetune.json"], cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    block = out[out.index("rule finetune"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
    # whole nodes, one SLURM task per GPU, 8 CPUs each; memory from cluster.node_mem_mb, not beyond RealMemory
    assert (res["nodes"], res["mpi"], res["tasks_per_node"], res["cpus_per_task"]) == ("16", "srun", "8", "8")
    assert res["slurm_extra"] == "--gpus-per-node=8 --exclusive" and "gpu" not in res
    assert res["mem_mb"] == str(PAPER["cluster"]["node_mem_mb"]) and int(res["mem_mb"]) <= 512 * 1000
    assert int(res["runtime"]) <= PAPER["cluster"]["time_limit_min"] and res["gpus_total"] == "128"
    assert "launch.py --nodes 16 --gpus-per-node 8 --procs-per-node 8 --mode srun" in block


def test_evaluations_ask_gpus_of_one_node_within_the_time_limit():
    p = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/paper.yaml", "-n",
                        "results/paper/eval/ppl/pg19/65B/base/ppl.json"], cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    block = out[out.index("rule perplexity"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
    assert (res["gpu"], res["nodes"]) == ("4", "1")  # never split across nodes
    assert int(res["runtime"]) <= PAPER["cluster"]["time_limit_min"]


def test_a_finetune_longer_than_the_time_limit_gets_the_submissions_it_needs():
    """33B FT-8192 (10000 steps on 32 GPUs, ~94 h): stops before each 24 h limit and is resubmitted; the rule's
    retries cover the longest fine-tune's submissions plus the failure retries."""
    ext = targets.find_extension(PAPER, "33B", "FT", 8192)
    job = sizing.train_job(PAPER, ext)
    usable = PAPER["cluster"]["time_limit_min"] - PAPER["cluster"]["stop_margin_min"]
    assert job["submissions"] == -(-ext["resources"]["train_runtime"] // usable) > 1
    assert job["runtime"] == PAPER["cluster"]["time_limit_min"]
    assert sizing.finetune_retries(PAPER) == job["submissions"] - 1 + PAPER["cluster"]["failure_retries"]


def test_the_cluster_guides_cluster_plan_is_the_generated_one():
    """docs/cluster.md's "What every job asks" is `snakemake cluster_plan`'s output for this config, not typed by
    hand."""
    sys.path.insert(0, str(ROOT / "workflow/scripts"))
    from cluster_plan import render

    guide = (ROOT / "docs/cluster.md").read_text()
    copy = guide[guide.index("<!-- cluster-plan -->\n") + 22:guide.index("<!-- /cluster-plan -->")]
    assert copy == render(pcfg.load(ROOT / "config/paper.yaml"))


def test_the_plan_prices_every_gpu_job_of_the_paper_dag(counts):
    """`snakemake plan`: one priced row per GPU job of the dry run, fine-tunes on the paper's GPU counts, each
    fine-tune's estimate within the time its job asks, a table's cost made of exactly its upstream."""
    from pi_repro import perf

    cfg = pcfg.load(ROOT / "config/paper.yaml")
    rows = cost.plan(cfg)
    per_rule = {r["rule"]: r["jobs"] for r in cost.by_rule(rows)}
    ruler_sharded = sum(n > 1 for k, n in cost.eval_shards(cfg).items() if k[0] == "ruler")
    gpu_jobs = dict(counts, perplexity=counts["perplexity"] - len(SHARDED),  # a sharded one's merge is a CPU job
                    ruler=counts["ruler"] - ruler_sharded)
    assert per_rule == {r: gpu_jobs[r] for r in ("finetune", "perplexity", "perplexity_shard", "passkey", "benchmark",
                                                  "summarize_finetune", "summarize", "ruler", "ruler_shard")}
    assert all(r["gpu_hours"] and r["gpu_hours"] > 0 for r in rows), [r for r in rows if not r["gpu_hours"]]
    for e, r in zip(cfg["extensions"], [r for r in rows if r["rule"] == "finetune"]):
        short = e["ctx"] == 8192 and e["size"] in ("7B", "13B", "33B")
        assert r["gpus_per_job"] == (32 if short else 128)  # the paper's 32 / 128 A100s
        assert e["resources"]["train_runtime"] >= 60 * r["wall_hours"], (r["what"], r["wall_hours"])
    # one job by hand: 7B PI-8192, 1000 steps x 64 x 8192 tokens, gradient checkpointing, 40% of 312 TFLOP/s
    n = 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008) + 4096 * 32000
    flops = 1000 * 64 * 8192 * (6 * n + 12 * 32 * 8192 * 4096) * 4 / 3
    pi8k = next(r for r in rows if r["what"] == "7B PI-8192")
    assert pi8k["gpu_hours"] == pytest.approx(flops / (0.4 * 312e12) / 3600) and 60 < pi8k["gpu_hours"] < 100
    assert perf.matmul_params(targets.shape(cfg, "7B")) == n
    table3 = [r for r in rows if "table3" in r["tables"]]
    assert sorted(r["what"] for r in table3 if r["rule"] == "finetune") == ["7B PI-16384", "7B PI-8192"]
    table3_shards = sum(n for (d, size, model), n in SHARDED.items()
                        if (d, size) == ("pg19", "7B") and model.split("/")[0] in ("PI-8192", "PI-16384"))
    assert len(table3) == 2 + 12 - 12 + table3_shards  # all 12 of its evaluations are sharded
    assert {r["rule"] for r in table3} == {"finetune", "perplexity_shard"}
    per_target = {t["target"]: t for t in cost.per_target(cfg, rows)}
    assert per_target["all"]["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in rows))
    assert per_target["table3"]["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in table3))
    out = subprocess.run([sys.executable, "-m", "snakemake", "plan", "--configfile", "config/paper.yaml", "--cores",
                          "1", "--forcerun", "plan", "--config", "run=plan-check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Per target:" in out.stdout and f"{per_target['all']['gpu_hours']:,.0f} GPU-hours" in out.stdout
    guide = (ROOT / "docs/cluster.md").read_text()  # the cluster guide's copy is the generated one
    start = guide.index("<!-- cost-plan -->\n") + len("<!-- cost-plan -->\n")
    assert guide[start:guide.index("<!-- /cost-plan -->")] == cost.render(cfg, jobs=False)


def test_each_dataset_is_tokenized_once_per_tokenizer(counts):
    """The four LLaMA sizes share one tokenizer (`sizes.<size>.tokenizer: llama`): the Pile subset (5.2B tokens),
    RedPajama (training tokens: rule tokenize), PG19 and proof-pile (evaluation documents: rule eval_docs) are each
    tokenized once, by the first size's tokenizer, and every size reads that data (each checks it against its own
    tokenizer's digest when it reads it)."""
    assert targets.tokenizers(PAPER) == ["llama"] and counts["tokenize"] == 2 and counts["eval_docs"] == 2
    out = planned_commands("all")
    jobs = re.findall(r"tokenize_corpus\.py --corpus results/paper/data/(\w+)/corpus\.jsonl\.gz --tokenizer (\S+)", out)
    want = sorted((d, "results/paper/models/7B/base") for d in ("pg19", "proofpile", "pile", "redpajama"))
    assert sorted(jobs) == want
    assert "results/paper/data/pile/llama/train.npy" in out and "data/pile/13B" not in out
    cfg = smoke_config()
    cfg["sizes"]["tiny2"] = dict(cfg["sizes"]["tiny"], tokenizer="tiny")  # both train their own: cannot share
    with pytest.raises(targets.ConfigError, match=r"sizes\.tiny2\.tokenizer: 'tiny' is shared by \['tiny', 'tiny2'\]"):
        pcfg.validate(cfg)
