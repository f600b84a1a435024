"""The Snakemake DAG itself: lint, targets, upstream-only rebuilds, config errors, and the smoke run end to end."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import smoke_config  # noqa: E402
from pi_repro import kinds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, check=True):
    p = subprocess.run(SNAKEMAKE + list(args), cwd=ROOT, capture_output=True, text=True)
    if check and p.returncode:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def job_counts(output: str) -> dict:
    counts, table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


def test_lint_is_clean():
    p = snakemake("--lint")
    assert "Congratulations" in p.stdout + p.stderr, p.stdout + p.stderr


def test_target_rules_are_the_papers_artefacts():
    p = snakemake("--list-target-rules")
    out = (p.stdout + p.stderr).split()
    for rule in ("all", "table1", "table2", "table3", "table4", "table5", "table6", "figure2", "audit"):
        assert rule in out


def test_table3_builds_only_its_upstream(tmp_path):
    out = snakemake("table3", "-n", "--config", "run=dag-check").stdout
    counts = job_counts(out)
    assert "table1" not in counts and "table2" not in counts and "findings" not in counts
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    rows = cfg["tables"]["table3"]["rows"]
    assert counts["finetune"] == len(rows)  # only the PI runs Table 3 shows; no FT, no CT
    assert counts["perplexity"] == sum(len(e["checkpoints"]) for e in cfg["extensions"]
                                       if {"size": e["size"], "method": e["method"], "ctx": e["ctx"]} in rows)
    assert "FT-" not in out and "CT-" not in out and "eval/ppl/proofpile" not in out


def test_table4_builds_only_its_upstream():
    """`snakemake table4`: the base model, the fine-tunes Table 4 reads and one passkey job per checkpoint it
    lists (each at all of its windows); no perplexity, no evaluation data, no other table."""
    out = snakemake("table4", "-n", "-p", "--config", "run=dag-check4").stdout
    counts = job_counts(out)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    rows = cfg["tables"]["table4"]["rows"]
    tuned = [r for r in rows if r["method"] != "None"]
    assert counts["finetune"] == len(tuned) == 4
    exts = {(e["method"], e["ctx"]): e for e in cfg["extensions"]}
    want = 1 + sum(len(r.get("steps", [s for s in exts[r["method"], r["ctx"]]["checkpoints"] if s > 0]))
                   if r["method"] != "CT" else 1 for r in tuned)
    assert counts["passkey"] == want == 10
    assert "perplexity" not in counts and "findings" not in counts and "table1" not in counts
    assert "eval/ppl" not in out  # (tokenization writes the evaluation split with the training split)
    assert "--windows 128,256" in out  # the base model within L and at 2L, in one job


def test_table5_builds_only_its_upstream():
    """`snakemake table5`: the task files built once, one benchmark job per row's model; no other evaluation."""
    out = snakemake("table5", "-n", "-p", "--config", "run=dag-check5").stdout
    counts = job_counts(out)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert counts["benchmark"] == len(cfg["tables"]["table5"]["rows"]) == 5
    assert counts["benchmark_task"] == len(cfg["benchmarks"]["tasks"]) == 2
    assert counts["finetune"] == 4 and "perplexity" not in counts and "passkey" not in counts
    assert "fetch_benchmarks" not in counts  # every default task is built here, offline
    assert len(re.findall(r"benchmark\.py .*--window 128 ", out)) == 5  # at the original window L


def test_users_slurm_command_runs_the_profiles_settings():
    """`snakemake --profile slurm` at the repository root picks up profiles/slurm (./slurm), its executor, its
    config and the account/partitions from the environment: the jobs it plans carry them."""
    env = dict(os.environ, PI_SLURM_ACCOUNT="acct-x", PI_SLURM_PARTITION="gpu-x", PI_SLURM_CPU_PARTITION="cpu-x",
               PI_SLURM_TRANSFER_PARTITION="net-x")
    p = subprocess.run(SNAKEMAKE + ["--profile", "slurm", "all", "-n", "--config", "run=profile-check"], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    partitions, gpu_less_on_gpu = {}, []
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        res = re.search(r"resources: (.*)", block)
        if res:
            kv = dict(x.split("=", 1) for x in res.group(1).split(", "))
            assert kv["slurm_account"] == "acct-x", (rule, kv)
            partitions.setdefault(rule, set()).add(kv["slurm_partition"])
            gpus = int(kv.get("gpus_total") or 0)  # every job of the paper DAG: on the GPU partition iff it asks GPUs
            assert (kv["slurm_partition"] == "gpu-x") == (gpus > 0) or kv["slurm_partition"] == "net-x", (rule, kv)
            if rule in ("perplexity", "rouge", "rouge_lead", "figure2") and not gpus:
                gpu_less_on_gpu.append(rule)
    # the CPU jobs that used to go to the GPU partition (a shard merge, scoring, the theory figure) run on the CPU one
    assert set(gpu_less_on_gpu) == {"perplexity", "rouge", "rouge_lead", "figure2"}
    assert partitions["finetune"] == partitions["perplexity_shard"] == {"gpu-x"}
    assert partitions["perplexity"] == {"gpu-x", "cpu-x"}  # evaluations, and the merges of sharded ones
    # sealing a checkpoint runs its probe as the evaluations load it: on their GPUs (issue #28, item 3)
    assert partitions["base_model"] == partitions["init_extension"] == {"gpu-x"}
    assert partitions["tokenize"] == partitions["rouge"] == partitions["figure2"] == {"cpu-x"}
    assert partitions["fetch_dataset"] == {"net-x"}
    counts = job_counts(out)
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert counts["finetune"] == len(paper["extensions"])  # the profile's config: the paper's
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles/slurm").resolve()


@pytest.mark.parametrize("key,value,named", [
    ("perplexity", {"stride": 10**4}, "perplexity.stride"),
    ("base_window", "big", "base_window"),
    ("run", "r" * 300, "config error at run: "),  # a raw OSError (file name too long) before
    ("tables", {}, "config error at tables: {} should be non-empty"),  # built nothing, exit 0, before
    ("datasets", {"pg19": {"path": "resources/corpora/no-such.jsonl.gz"}}, "datasets.pg19.path: resources/corpora/no-"
                                                                            "such.jsonl.gz does not exist"),
    ("datasets", {"pg19": {"path": "resources/corpora/coq.jsonl.gz"}}, "datasets.pg19.path: resources/corpora/coq."
                                                                         "jsonl.gz has sha256 a3a250ef"),
    ("sizes", {"mini": {"base": {"source": "local", "path": "resources/paper"}}}, "sizes.mini.base.path: "
                                                                                  "resources/paper has no SHA256SUMS"),
])
def test_bad_config_stops_before_any_job(tmp_path, key, value, named):
    """A bad value is named before any job runs (the local files the config names included: they must be there and
    be what their sha256 says, pi_repro.preflight)."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["run"] = "bad-config"
    if isinstance(value, dict) and value:
        for k, v in value.items():  # merged one level deeper where both are mappings
            cfg[key][k] = {**cfg[key][k], **v} if isinstance(v, dict) and isinstance(cfg[key].get(k), dict) else v
    else:
        cfg[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = snakemake("--configfile", str(path), "--cores", "1", check=False)
    assert p.returncode != 0
    assert named in p.stdout + p.stderr, (p.stdout + p.stderr)[-2000:]
    assert not (ROOT / "results/bad-config").exists() and not (ROOT / f"results/{cfg['run']}"[:200]).exists()


def test_the_snakefile_refuses_another_working_directory(tmp_path):
    """Run from elsewhere (`snakemake -s path/to/Snakefile`), every job would fail late on a relative path: it says
    at once where to run it."""
    p = subprocess.run(SNAKEMAKE + ["-s", str(ROOT / "Snakefile"), "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0 and f"run Snakemake from the repository: cd {ROOT}" in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(smoke_run):
    out = smoke_run
    for t in ("table1", "table2", "table3"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{t}.{ext}").stat().st_size > 0
    t1 = pd.read_csv(out / "tables/table1.csv", keep_default_na=False, na_values=[""])
    assert set(t1["method"]) == {"None", "PI", "FT", "CT"}
    t3 = pd.read_csv(out / "tables/table3.csv")
    assert list(t3.columns[3:]) == ["0", "3", "6"] and len(t3) == 1
    assert (out / "figures/ppl_vs_window.png").stat().st_size > 10_000
    t4 = pd.read_csv(out / "tables/table4.csv", keep_default_na=False, na_values=[""])
    assert list(t4["method"]) == ["None", "FT", "PI"] and set(t4["window"]) == {128}
    rec = json.loads((out / "eval/passkey/synthetic/tiny/PI-64/step6/passkey.json").read_text())
    trials = rec["windows"]["128"]["trials"]
    assert len(trials) == 4 * 2 and {"k", "key", "generated", "correct"} <= set(trials[0])  # every trial kept
    assert rec["model_sha256"] and rec["protocol"]["intro"] is False
    assert (out / "figures/passkey.png").stat().st_size > 10_000
    assert (out / "figures/figure2.png").stat().st_size > 10_000
    assert "| 6b |" in (out / "findings.md").read_text()
    t5 = pd.read_csv(out / "tables/table5.csv", keep_default_na=False, na_values=[""])
    assert list(t5["method"]) == ["None", "PI"] and {"Cloze-PG19", "Cloze-PG19 stderr"} <= set(t5.columns)
    rec = json.loads((out / "eval/bench/zeroshot/tiny/PI-64/step6/bench.json").read_text())
    assert rec["scale_factor"] == 2.0 and rec["window"] == 32 and len(rec["samples"]["cloze_pg19"]) == 12
    assert "Findings" in (out / "findings.md").read_text()
    t6 = pd.read_csv(out / "tables/table6.csv", keep_default_na=False, na_values=[""])
    assert list(t6["method"]) == ["None", "PI", "LEAD"] and list(t6["window"]) == [32, 64, 0]
    assert {"ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-L vs None", "ROUGE-L vs None lo"} <= set(t6.columns)
    run = json.loads((out / "models/tiny/summarize-manpages/PI-64/step6/finetune.json").read_text())
    assert (run["window"], run["train_docs"], run["hp"]["steps"], run["final"]) == (64, 16, 4, "step4")
    assert run["checkpoints"]["step4"]["rope_parameters"]["factor"] == 2.0  # PI's scaling kept
    summaries = (out / "eval/summaries/manpages/tiny/PI-64/step6/summaries.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in summaries]
    assert len(rows) == 8 and all({"id", "summary", "reference"} <= set(r) for r in rows)  # the summaries are kept
    assert all(r["prompt_tokens"] <= 64 - 4 for r in rows) and rows[0]["model"].endswith("PI-64/step6/step4")
    assert "| 7 | Table 6 tiny PI-64 |" in (out / "findings.md").read_text()
    ft = json.loads((out / "models/tiny/PI-64/finetune.json").read_text())["throughput"]  # pi_repro.perf
    assert ft["tokens_trained"] == 6 * 4 * 64 and 0 < ft["mfu"] < 1 and ft["flops_per_token"] > 0
    # every rule left a log and a benchmark
    logs = [p for p in (out / "logs").rglob("*.log") if not p.name.endswith(".attempts.log")]  # fine-tune history
    assert len(list((out / "benchmarks").rglob("*.tsv"))) == len(logs)
    # a second invocation has nothing to do: nothing is recomputed
    again = snakemake("--configfile", "config/smoke.yaml", "--config", f"run={out.name}", "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_sharded_perplexity_through_snakemake_reproduces_table1(smoke_run, tmp_path):
    """`perplexity.shards: 2` on a copy of the smoke run: `snakemake table1` reruns only Table 1's evaluations, each
    as 2 shard jobs and a merge, and Table 1 comes out the same (the smoke config's batches mix documents' windows,
    so the values agree to float32 rounding: docs/cluster.md, "Sharded evaluations")."""
    import shutil

    from conftest import assert_same_tables

    copy = smoke_run.parent / f"{smoke_run.name}-sharded"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(smoke_run, copy, symlinks=True)
    cfg = smoke_config()
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump({"perplexity": dict(cfg["perplexity"], shards=2)}))
    args = ("table1", "--configfile", "config/smoke.yaml", str(tmp_path / "shards.yaml"), "--config",
            f"run={copy.name}", "--cores", "2")
    records = kinds.table_records(cfg, "table1")
    # Table 1 and its evaluations to redo (the copy has no Snakemake metadata: a changed config does not rerun them)
    for _, dataset, size, model in records:
        (copy / f"eval/ppl/{dataset}/{size}/{model}/ppl.json").unlink()
    for f in (copy / "tables").glob("table1.*"):
        f.unlink()
    n = len(records)
    assert job_counts(snakemake(*args, "-n").stdout) == {"perplexity_shard": 2 * n, "perplexity": n, "table": 1,
                                                         "table1": 1}
    snakemake(*args)
    assert_same_tables(smoke_run, copy, tables=("table1",))
    for _, dataset, size, model in records:
        rec = json.loads((copy / f"eval/ppl/{dataset}/{size}/{model}/ppl.json").read_text())
        assert rec["shards"] == 2 and [json.loads((copy / f"eval/ppl/{dataset}/{size}/{model}/shards/{k}-of-2.json")
                                                  .read_text())["shard"]["index"] for k in (0, 1)] == [0, 1]
    shutil.rmtree(copy)


@pytest.mark.slow
def test_table_cells_equal_an_independent_brute_force_evaluation(smoke_run):
    """Table 2's cells of the base model (extrapolation to 2L included) and of PI at L', recomputed here from the
    run's checkpoints and evaluation documents by the per-token brute-force reference (full logits of every
    window, one token at a time): the same perplexity to 1e-5 relative."""
    import math

    import torch
    from pi_repro import data, modeling, tables
    from test_perplexity import brute_force_nll

    cfg = smoke_config()
    stride = cfg["perplexity"]["stride"]
    _, docs = data.load_docs(smoke_run / "data/proofpile/tiny/eval.npz")
    t2 = tables.read_table(smoke_run / "tables/table2.csv")
    for method, ctx, model_dir, windows in (("None", 32, "base", (16, 32, 64)), ("PI", 64, "PI-64/step6", (64,))):
        model = modeling.load_model(smoke_run / "models/tiny" / model_dir)
        row = t2[(t2["method"] == method) & (t2["model_ctx"] == ctx)].iloc[0]
        for w in windows:
            nll = [brute_force_nll(model, torch.from_numpy(d.astype("int64")), w, stride) for d in docs]
            want = math.exp(sum(n for n, _ in nll) / sum(c for _, c in nll))
            assert row[str(w)] == pytest.approx(want, rel=1e-5), (method, ctx, w)
