"""The Snakemake DAG itself: lint, targets, upstream-only rebuilds, config errors, and the smoke run end to end."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

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
    for rule in ("all", "table1", "table2", "table3"):
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


def test_users_slurm_command_finds_the_profile():
    p = snakemake("--profile", "slurm", "all", "-n", "--config", "run=profile-check")
    assert "Using profile slurm" in p.stdout + p.stderr
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles/slurm").resolve()


@pytest.mark.parametrize("key,value,named", [
    ("perplexity", {"stride": 10**4}, "perplexity.stride"),
    ("base_window", "big", "base_window"),
])
def test_bad_config_stops_before_any_job(tmp_path, key, value, named):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["run"] = "bad-config"
    if isinstance(value, dict):
        cfg[key].update(value)
    else:
        cfg[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = snakemake("--configfile", str(path), "--cores", "1", check=False)
    assert p.returncode != 0
    assert named in p.stdout + p.stderr
    assert not (ROOT / "results/bad-config").exists()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end():
    run = "pytest-smoke"
    shutil.rmtree(ROOT / "results" / run, ignore_errors=True)
    snakemake("--configfile", "config/smoke.yaml", "--config", f"run={run}", "--cores", "2")
    out = ROOT / "results" / run
    for t in ("table1", "table2", "table3"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{t}.{ext}").stat().st_size > 0
    t1 = pd.read_csv(out / "tables/table1.csv", keep_default_na=False, na_values=[""])
    assert set(t1["method"]) == {"None", "PI", "FT", "CT"}
    base = t1[t1["method"] == "None"].iloc[0]
    assert all(float(base[c]) > 1 for c in ("16", "32", "64"))  # base evaluated up to extrapolate_to
    t3 = pd.read_csv(out / "tables/table3.csv")
    assert list(t3.columns[3:]) == ["0", "3", "6"] and len(t3) == 1
    assert (out / "figures/ppl_vs_window.png").stat().st_size > 10_000
    assert "Findings" in (out / "findings.md").read_text()
    # every rule left a log and a benchmark
    assert len(list((out / "benchmarks").rglob("*.tsv"))) == len(list((out / "logs").rglob("*.log")))
    # a second invocation has nothing to do: nothing is recomputed
    again = snakemake("--configfile", "config/smoke.yaml", "--config", f"run={run}", "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
