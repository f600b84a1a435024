"""config/paper.yaml: its DAG (dry run) has exactly one job per cell of the paper's tables, no more, no less,
with the paper's hyperparameters and GPU counts; the user's SLURM command finds the profile and this config."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from pi_repro import config as pcfg  # noqa: E402

PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())

# Rows of the paper's tables (../shared/paper/reference.md), written out here independently of the config.
TABLE1_ROWS = [  # (size, model ctx, method) -- Table 2 has the same rows
    ("7B", 2048, "None"), ("7B", 8192, "FT"), ("7B", 8192, "PI"), ("7B", 16384, "PI"), ("7B", 32768, "PI"),
    ("13B", 2048, "None"), ("13B", 8192, "FT"), ("13B", 8192, "PI"), ("13B", 16384, "PI"), ("13B", 32768, "PI"),
    ("33B", 2048, "None"), ("33B", 8192, "FT"), ("33B", 8192, "PI"), ("33B", 16384, "PI"),
    ("65B", 2048, "None"), ("65B", 8192, "PI")]
TABLE1_NONE_WINDOWS = {"7B": [2048, 4096, 8192, 16384, 32768], "13B": [2048], "33B": [2048], "65B": [2048]}
TABLE3_ROWS = {("7B", 8192): [0, 200, 400, 600, 800, 1000], ("7B", 16384): [0, 200, 400, 600, 800, 1000]}
TABLE4_ROWS = {  # (size, method, ctx) -> fine-tuning steps with a passkey cell
    ("7B", "FT", 8192): [200, 400, 600, 800, 1000, 10000], ("33B", "FT", 8192): [200, 400, 600, 800, 1000],
    ("7B", "PI", 8192): [200, 400, 600, 800, 1000], ("7B", "PI", 16384): [200, 400, 600, 800, 1000],
    ("7B", "PI", 32768): [200, 400, 600, 800, 1000], ("33B", "PI", 8192): [200, 400, 600, 800, 1000],
    ("33B", "PI", 16384): [200, 400, 600, 800, 1000]}
TABLE5_VARIANTS = [("7B", "PI", 8192, "redpajama")]  # fine-tuned on RedPajama instead of the Pile
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
    assert counts["base_model"] == 4


def test_checkpoints_are_the_steps_the_tables_read():
    for e in PAPER["extensions"]:
        want = {STEPS[e["method"]]} | set(TABLE4_ROWS.get((e["size"], e["method"], e["ctx"]), []) if not e.get("tag") else [])
        want |= set(TABLE3_ROWS.get((e["size"], e["ctx"]), []) if e["method"] == "PI" and not e.get("tag") else [])
        assert e["steps"] == STEPS[e["method"]] and set(e["checkpoints"]) == want, e


def test_one_perplexity_job_per_checkpoint_of_tables_1_to_3(counts):
    table3_extra = sum(len([s for s in steps if s != STEPS["PI"]]) for steps in TABLE3_ROWS.values())
    assert counts["perplexity"] == 2 * len(TABLE1_ROWS) + table3_extra == 42
    for t in ("table1", "table2", "table3", "findings", "figure_ppl_vs_window"):
        assert counts[t] == 1
    assert counts["fetch_dataset"] == 5  # PG19, proof-pile, Pile subset, RedPajama sample, GovReport


def test_evaluation_windows_match_the_papers_columns():
    _, cells = pcfg.table_cells(PAPER, "table1")
    base = {(s, w) for s, m, w in cells if m == "base"}
    assert base == {(s, w) for s, ws in TABLE1_NONE_WINDOWS.items() for w in ws}
    for s, m, w in cells:
        if m != "base":
            assert w <= int(m.split("/")[0].split("-")[1])  # up to each model's own window
    # the paper's non-empty cells of fine-tuned rows: 7B 3+3+4+5, 13B 3+3+4+5, 33B 3+3+4, 65B 3
    assert len([c for c in cells if c[1] != "base"]) == 15 + 15 + 10 + 3


def test_hyperparameters_and_gpus_are_the_papers():
    for e in PAPER["extensions"]:
        hp = pcfg.train_hparams(PAPER, e)
        res = pcfg.resources(PAPER, e["size"], e)
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
    assert pcfg.train_tokens_needed(PAPER, "pile") == 10000 * 64 * 8192  # FT-8192: 10000 steps of 64 x 8192
    assert pcfg.train_tokens_needed(PAPER, "redpajama") == 1000 * 64 * 8192
    assert pcfg.train_tokens_needed(PAPER, "pg19") == 0


def test_users_literal_slurm_command_runs_the_paper_dag(counts):
    """`snakemake --profile slurm all` at the repository root: the profile is found and it selects this config."""
    assert dry_run("--profile", "slurm", "all") == counts


def test_multi_node_finetune_asks_slurm_for_nodes_and_gpus():
    p = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/paper.yaml", "-n", "-p",
                        "results/paper/models/65B/PI-8192/finetune.json"], cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    block = out[out.index("rule finetune"):]
    assert "nodes=16" in block and "mpi=srun" in block and "tasks=16" in block and "--gpus-per-node=8" in block
    assert "launch.py --nodes 16 --gpus-per-node 8 --procs-per-node 8" in block
