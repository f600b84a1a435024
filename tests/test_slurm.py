"""The user's SLURM command on a real (local, one-node) SLURM cluster: every job through sbatch, tables equal to
a local run's. Needs the cluster of .ci/local-slurm.sh (CI starts it); skipped without one unless
PI_REPRO_REQUIRE_SLURM=1, which turns the skip into a failure."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = os.environ.get("SLURM_TEST_ACCOUNT", "pi-repro")
PARTITION = os.environ.get("SLURM_TEST_PARTITION", "debug")


def cluster_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not cluster_up() and os.environ.get("PI_REPRO_REQUIRE_SLURM") != "1",
    reason="no SLURM cluster (start one with .ci/local-slurm.sh start)")]


def run(*args, **kw):
    p = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"snakemake {' '.join(args)} failed:\n{p.stdout[-5000:]}\n{p.stderr[-5000:]}"
    return p.stdout + p.stderr


def test_smoke_run_through_sbatch_equals_local_run():
    assert cluster_up(), "SLURM is required here but sinfo fails"
    local, slurm = "slurm-ref-local", "slurm-ref-sbatch"
    for r in (local, slurm):
        shutil.rmtree(ROOT / "results" / r, ignore_errors=True)
    run("--configfile", "config/smoke.yaml", "--config", f"run={local}", "--cores", "2")
    # the user's command, with only the account and partition set for the local cluster
    out = run("--profile", "slurm", "--configfile", "config/smoke.yaml", "--config", f"run={slurm}",
              "--default-resources", f"slurm_account={ACCOUNT}", f"slurm_partition={PARTITION}",
              "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2")
    job_ids = sorted(set(re.findall(r"SLURM jobid (\d+)", out)), key=int)
    dry = run("--configfile", "config/smoke.yaml", "--config", f"run={slurm}-count", "-n", "--quiet", "rules")
    total = int(re.search(r"^total\s+(\d+)", dry, re.M).group(1))
    assert len(job_ids) == total - 1  # every job but the local target rule `all` went through sbatch
    acct = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
                          capture_output=True, text=True, check=True).stdout.split()
    states = dict(line.split("|") for line in acct)
    assert set(states) == set(job_ids) and set(states.values()) == {"COMPLETED"}, states
    for t in ("table1", "table2", "table3"):
        a = (ROOT / "results" / local / "tables" / f"{t}.csv").read_bytes()
        b = (ROOT / "results" / slurm / "tables" / f"{t}.csv").read_bytes()
        assert a == b, f"{t} differs between the local and the SLURM run"


def test_requeued_finetune_resumes_to_identical_weights(tmp_path):
    """A fine-tune job requeued by SLURM (as on preemption) resumes from its last checkpoint; its final weights are
    bitwise equal to an uninterrupted run's."""
    import json

    import torch

    from interrupt import final_weights, reference_and_fresh_run, snakemake_cmd, wait_for_checkpoint

    cfg, target = reference_and_fresh_run(tmp_path, "requeue")
    proc = subprocess.Popen(snakemake_cmd(
        target, "--profile", "slurm", "--configfile", str(cfg),
        "--default-resources", f"slurm_account={ACCOUNT}", f"slurm_partition={PARTITION}",
        "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = wait_for_checkpoint("requeue-test", proc)
    running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert len(running) == 1, running  # only the fine-tune is running now
    subprocess.run(["scontrol", "requeue", running[0]], check=True)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-5000:]
    restarts = subprocess.run(["sacct", "-n", "-P", "-D", "-X", "-o", "JobID,State", "-j", running[0]],
                              capture_output=True, text=True, check=True).stdout.split()
    assert any("REQUEUED" in r for r in restarts) and restarts[-1].endswith("COMPLETED"), restarts
    manifest = json.loads((ROOT / target).read_text())
    assert manifest["resumed_from"] and int(manifest["resumed_from"].rsplit("-", 1)[1]) >= int(ckpt.name.split("-")[1])
    a, b = final_weights("requeue-ref"), final_weights("requeue-test")
    assert all(torch.equal(a[k], b[k]) for k in a)



def test_multi_node_launch_path_runs_zero3_inside_an_allocation(tmp_path):
    """The launcher of the 128-GPU runs, inside a real SLURM allocation: srun starts one torchrun per node
    (here the cluster's one node), which rendezvous (c10d) and run the smoke fine-tune on two ranks under
    DeepSpeed ZeRO-3 (gloo); the export is consolidated and verified against the training-time logits."""
    import json

    import yaml

    name = "srun-launch"
    shutil.rmtree(ROOT / "results" / name, ignore_errors=True)
    run_dir = ROOT / "results" / name
    step0, data = run_dir / "models/tiny/PI-64/step0", [run_dir / f"data/{d}/tiny/train.npz" for d in ("pg19", "proofpile")]
    run(str(step0.relative_to(ROOT)), *[str(d.relative_to(ROOT)) for d in data],
        "--configfile", "config/smoke.yaml", "--config", f"run={name}", "--cores", "2")
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    hp = dict(smoke["train"], lr=smoke["sizes"]["tiny"]["lr"], steps=6, seed=smoke["seed"],
              deepspeed="config/deepspeed/zero3-cpu.json")
    out = run_dir / "models/tiny/PI-64"
    cmd = [sys.executable, "-u", "workflow/scripts/launch.py", "--mode", "srun", "--nodes", "1", "--procs-per-node", "2",
           "--cpus-per-node", "2", "--", "workflow/scripts/finetune.py", "--init", str(step0), "--method", "PI",
           "--ctx", "64", "--base-window", "32", "--hp", json.dumps(hp), "--checkpoints", "0,3,6",
           "--outdir", str(out), "--manifest", str(out / "finetune.json"), *map(str, data)]
    log = tmp_path / "job.log"
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\nset -e\ncd " + str(ROOT) + "\nexport PATH=" + os.environ["PATH"] + "\n"
                      + " ".join(__import__("shlex").quote(c) for c in cmd) + "\n")
    p = subprocess.run(["sbatch", "--wait", "-A", ACCOUNT, "-p", PARTITION, "--nodes=1", "--ntasks=1",
                        "--cpus-per-task=2", "-o", str(log), str(script)], capture_output=True, text=True, timeout=900)
    text = log.read_text() if log.is_file() else ""
    assert p.returncode == 0, p.stderr + text[-5000:]
    launch = next(line for line in text.splitlines() if line.startswith("launch:"))
    assert launch.startswith("launch: srun --nodes=1 --ntasks=1 --ntasks-per-node=1 --kill-on-bad-exit=1")
    assert "--rdzv-backend=c10d" in launch and "--nnodes=1" in launch and "--nproc-per-node=2" in launch
    man = json.loads((out / "finetune.json").read_text())
    assert man["world_size"] == 2 and man["deepspeed_zero_stage"] == 3
    assert all(man["checkpoints"][s]["probe_error"] < 1e-4 for s in ("step3", "step6"))
