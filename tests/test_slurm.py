"""The user's SLURM command on a real (local, one-node) SLURM cluster, through the profile and Snakemake's SLURM
executor as users run it: every job through sbatch, tables equal to a local run's; a fine-tune on two nodes
through the multi-node launch path (an `mpi` job: srun -> torchrun -> c10d rendezvous, ZeRO-3 on two ranks) with
GPUs and a GPU-requesting evaluation; a requeued fine-tune and a fine-tune longer than its time limit, both
resuming to bitwise-equal weights. Needs the cluster of .ci/local-slurm.sh (CI starts it: two slurmd nodes on
one machine, 8 count-only GPUs each, partitions debug, cpu and transfer); skipped without one unless
PI_REPRO_REQUIRE_SLURM=1."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import assert_same_tables, smoke_config
from interrupt import final_weights, long_finetune_config, snakemake_cmd, wait_for_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = os.environ.get("SLURM_TEST_ACCOUNT", "pi-repro")
PARTITION = os.environ.get("SLURM_TEST_PARTITION", "debug")
CPU_PARTITION = os.environ.get("SLURM_TEST_CPU_PARTITION", "cpu")
TRANSFER_PARTITION = os.environ.get("SLURM_TEST_TRANSFER_PARTITION", "transfer")
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]


def cluster_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not cluster_up() and os.environ.get("PI_REPRO_REQUIRE_SLURM") != "1",
    reason="no SLURM cluster (start one with .ci/local-slurm.sh start)")]


def user_env() -> dict:
    """What a user sets before `snakemake --profile slurm` (docs/cluster.md): account and partitions, nothing else."""
    return dict(os.environ, PI_SLURM_ACCOUNT=ACCOUNT, PI_SLURM_PARTITION=PARTITION,
                PI_SLURM_CPU_PARTITION=CPU_PARTITION, PI_SLURM_TRANSFER_PARTITION=TRANSFER_PARTITION)


def run(*args, env=None, **kw):
    p = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True,
                       env=env, **kw)
    assert p.returncode == 0, f"snakemake {' '.join(args)} failed:\n{p.stdout[-5000:]}\n{p.stderr[-5000:]}"
    return p.stdout + p.stderr


def run_profile(*args) -> tuple[str, dict]:
    """`snakemake --profile slurm ...` with the user's environment; returns the output and, per SLURM job it
    submitted, what sacct recorded."""
    out = run(*args, "--profile", "slurm", *FAST_STATUS, env=user_env())
    return out, sacct(re.findall(r"SLURM jobid (\d+)", out))


def sacct(job_ids) -> dict:
    """{job id: {rule, state, partition, nodes, tres}} of every allocation (-D: requeued runs too)."""
    if not job_ids:
        return {}
    lines = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-o", "JobID,State,Partition,NNodes,AllocTRES,Comment",
                            "-j", ",".join(sorted(set(job_ids)))], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    jobs = {}
    for line in lines:
        job, state, partition, nodes, tres, comment = line.split("|")
        jobs.setdefault(job, []).append({"rule": re.match(r"rule_([a-z0-9_]+?)(_wildcards|$)", comment).group(1),
                                         "state": state.split()[0], "partition": partition, "nodes": int(nodes),
                                         "tres": dict(kv.split("=") for kv in tres.split(",") if kv)})
    return {job: runs[-1] | {"runs": [r["state"] for r in runs]} for job, runs in jobs.items()}


def test_smoke_run_through_sbatch_equals_local_run(smoke_run):
    assert cluster_up(), "SLURM is required here but sinfo fails"
    name = "slurm-sbatch"
    shutil.rmtree(ROOT / "results" / name, ignore_errors=True)
    out, jobs = run_profile("--configfile", "config/smoke.yaml", "--config", f"run={name}")
    dry = run("--configfile", "config/smoke.yaml", "--config", f"run={name}-count", "-n", "--quiet", "rules")
    total = int(re.search(r"^total\s+(\d+)", dry, re.M).group(1))
    assert len(jobs) == total - 1  # every job but the local target rule `all` went through sbatch
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}, jobs
    # each rule ran on the partition it is given, with the CPUs the rule asks (not the profile default): the smoke
    # config asks no GPU, so its fine-tunes and evaluations run on the CPU partition too
    want = {"fetch_dataset": TRANSFER_PARTITION, "base_model": CPU_PARTITION, "tokenize": CPU_PARTITION,
            "train_tokenizer": CPU_PARTITION, "init_extension": CPU_PARTITION, "table1": CPU_PARTITION,
            "findings": CPU_PARTITION, "finetune": CPU_PARTITION, "perplexity": CPU_PARTITION}
    for job in jobs.values():
        assert job["partition"] == want.get(job["rule"], job["partition"]), job
        if job["rule"] == "tokenize":
            assert job["tres"]["cpu"] == "1", job  # the rule's threads (smoke's data_cpus), not the profile's 4
    assert_same_tables(smoke_run, ROOT / "results" / name)


def test_gpu_jobs_and_the_multi_node_launch_path_through_the_executor(tmp_path):
    """A fine-tune on two nodes (the multi-node launch path: an `mpi` job, srun starts one torchrun per node,
    c10d rendezvous on the first, ZeRO-3 on two gloo ranks) asking one GPU per node, then an evaluation asking
    one GPU, both submitted by the executor from the profile, both COMPLETED in sacct with the GPUs allocated.
    The jobstep plugin strips SLURM_JOB_NODELIST from an mpi job's environment: the launcher must find the
    allocation's hosts from the job id (the launch code before this test failed here)."""
    name = "slurm-gpu"
    cfg = smoke_config()
    cfg["run"] = name
    cfg["sizes"]["tiny"]["resources"] = {"train_nodes": 2, "train_gpus_per_node": 1, "train_cpus_per_node": 1,
                                         "train_full_node": True, "eval_gpus": 1, "eval_cpus": 1, "eval_mem_mb": 4000}
    cfg["cluster"] = {"node_mem_mb": 4000}  # whole nodes (--exclusive), as the paper's fine-tunes ask them
    cfg["train"]["deepspeed"] = "config/deepspeed/zero3-cpu.json"
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    shutil.rmtree(ROOT / "results" / name, ignore_errors=True)
    r = ROOT / "results" / name
    upstream = ["models/tiny/PI-64/step0", "data/pg19/tiny/eval.npz",
                *[f"data/{d}/tiny/train.npy" for d in ("pg19", "proofpile")]]
    run(*[f"results/{name}/{u}" for u in upstream], "--configfile", str(path), "--cores", "2")  # CPU jobs: locally
    target = f"results/{name}/eval/ppl/pg19/tiny/PI-64/step6/ppl.json"
    out, jobs = run_profile(target, "--configfile", str(path))
    by_rule = {j["rule"]: (job, j) for job, j in jobs.items()}
    assert set(by_rule) == {"finetune", "perplexity"} and len(jobs) == 2, jobs
    (ft_id, ft), (_, ppl) = by_rule["finetune"], by_rule["perplexity"]
    assert ft["state"] == "COMPLETED" and ppl["state"] == "COMPLETED", jobs
    node = subprocess.run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%c %G"], capture_output=True, text=True,
                          check=True).stdout.split("\n")[0].split()
    cpus_per_node, gpus_per_node = int(node[0]), int(node[1].split(":")[-1])
    # --exclusive: both nodes whole (every CPU and GPU, not the 1 + 1 asked), cluster.node_mem_mb on each
    assert ft["nodes"] == 2 and ft["tres"]["cpu"] == str(2 * cpus_per_node)
    assert ft["tres"].get("gres/gpu") == str(2 * gpus_per_node) and ft["tres"]["mem"] == "8000M"
    assert ppl["nodes"] == 1 and ppl["tres"].get("gres/gpu") == "1"
    assert ft["partition"] == ppl["partition"] == PARTITION  # jobs that ask GPUs: the GPU partition
    steps = subprocess.run(["sacct", "-n", "-P", "-j", ft_id, "-o", "JobID,NNodes,State"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert f"{ft_id}.0|2|COMPLETED" in steps, steps  # the launcher's srun step ran on both nodes
    log = (r / "logs/finetune/tiny/PI-64.log").read_text()
    launch = next(line for line in log.splitlines() if line.startswith("launch: srun"))
    assert launch.startswith("launch: srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1")
    assert "--gpus-per-node=1" in launch and "--nnodes=2" in launch and "--rdzv-backend=c10d" in launch
    man = json.loads((r / "models/tiny/PI-64/finetune.json").read_text())
    assert man["world_size"] == 2 and man["deepspeed_zero_stage"] == 3
    assert all(man["checkpoints"][s]["probe_error"] < 1e-4 for s in ("step3", "step6"))
    assert json.loads((ROOT / target).read_text())["windows"]


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """An uninterrupted local run of the long fine-tune (one thread): the weights the SLURM runs must reproduce."""
    cfg, target = long_finetune_config(tmp_path_factory.mktemp("ref"), "slurm-long-ref", **LONG)
    shutil.rmtree(ROOT / "results/slurm-long-ref", ignore_errors=True)
    subprocess.run(snakemake_cmd(target, "--configfile", str(cfg), "--cores", "2"), cwd=ROOT, check=True,
                   capture_output=True)
    return final_weights("slurm-long-ref", LONG["steps"])


# long enough (about a minute of training on one thread, 2000 steps took 14 s here) to outlast a one-minute limit
LONG = {"steps": 8000, "resume_every": 200, "checkpoints": [0, 4000, 8000]}


def test_requeued_finetune_resumes_to_identical_weights(tmp_path, long_reference):
    """A fine-tune job requeued by SLURM (as on preemption) resumes from its last checkpoint; its final weights are
    bitwise equal to an uninterrupted run's."""
    import torch

    cfg, target = long_finetune_config(tmp_path, "requeue-test", **LONG)
    shutil.rmtree(ROOT / "results/requeue-test", ignore_errors=True)
    proc = subprocess.Popen(snakemake_cmd(target, "--configfile", str(cfg), "--profile", "slurm", *FAST_STATUS),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=user_env())
    ckpt = wait_for_checkpoint("requeue-test", proc, minimum=200)
    running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert len(running) == 1, running  # only the fine-tune is running now
    subprocess.run(["scontrol", "requeue", running[0]], check=True)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-5000:]
    runs = sacct(running)[running[0]]["runs"]
    assert "REQUEUED" in runs and runs[-1] == "COMPLETED", runs
    manifest = json.loads((ROOT / target).read_text())
    assert manifest["resumed_from"] and int(manifest["resumed_from"].rsplit("-", 1)[1]) >= int(ckpt.name.split("-")[1])
    b = final_weights("requeue-test", LONG["steps"])
    assert long_reference.keys() == b.keys() and all(torch.equal(long_reference[k], b[k]) for k in b)


def test_finetune_longer_than_its_time_limit_is_resubmitted_to_identical_weights(tmp_path, long_reference):
    """A one-minute time limit on a fine-tune that needs more: each job saves its state and exits before the
    limit (or is stopped by SLURM), Snakemake resubmits it as often as the config says, and the last submission
    ends with weights bitwise equal to an uninterrupted run's. Every attempt's log is kept."""
    import torch

    cluster = {"time_limit_min": 1, "stop_margin_min": 0.25, "failure_retries": 2}
    cfg, target = long_finetune_config(tmp_path, "timelimit-test", cluster=cluster, train_runtime=4, **LONG)
    shutil.rmtree(ROOT / "results/timelimit-test", ignore_errors=True)
    out, jobs = run_profile(target, "--configfile", str(cfg), "--set-threads", "finetune=1")
    finetunes = sorted((j for j in jobs.items() if j[1]["rule"] == "finetune"), key=lambda j: int(j[0]))
    states = [j["state"] for _, j in finetunes]
    assert len(finetunes) >= 2 and states[-1] == "COMPLETED", states
    assert set(states[:-1]) <= {"FAILED", "TIMEOUT"}, states  # stopped itself (status 75) or by SLURM
    history = (ROOT / "results/timelimit-test/logs/finetune/tiny/PI-64.attempts.log").read_text()
    for job, _ in finetunes:
        assert history.count(f"SLURM job {job} on") == 1  # every attempt once: none overwritten, none retried in place
    assert "before the job's time limit" in history
    b = final_weights("timelimit-test", LONG["steps"])
    assert long_reference.keys() == b.keys() and all(torch.equal(long_reference[k], b[k]) for k in b)


def test_a_profile_placeholder_left_unset_stops_before_any_submission(tmp_path):
    """`snakemake --profile slurm` without PI_SLURM_ACCOUNT (a user who skipped docs/cluster.md's set-up): stopped
    before the first sbatch, naming the variable and where the profile reads it; nothing is queued."""
    env = {k: v for k, v in user_env().items() if k != "PI_SLURM_ACCOUNT"}
    cfg = smoke_config()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(cfg, run="slurm-unset")))
    shutil.rmtree(ROOT / "results/slurm-unset", ignore_errors=True)
    p = subprocess.run([sys.executable, "-m", "snakemake", "table1", "--profile", "slurm", *FAST_STATUS,
                        "--configfile", str(path)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert "set PI_SLURM_ACCOUNT in the environment" in out and "default-resources.slurm_account" in out, out[-3000:]
    assert not re.findall(r"SLURM jobid (\d+)", out)  # nothing submitted
    assert not (ROOT / "results/slurm-unset/data").exists()


def test_a_job_no_partition_can_run_stops_before_any_submission(tmp_path):
    """Evaluations asking 16 GPUs on one node of a cluster whose nodes have 8: the run stops before the first
    sbatch (SLURM would keep the job PENDING forever; seen on this cluster: Snakemake waits silently), naming the
    rule, SLURM's reason and the request."""
    cfg = smoke_config()
    cfg["run"] = "slurm-unsatisfiable"
    cfg["sizes"]["tiny"]["resources"] = {"eval_gpus": 16}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    shutil.rmtree(ROOT / "results/slurm-unsatisfiable", ignore_errors=True)
    target = "results/slurm-unsatisfiable/eval/ppl/pg19/tiny/base/ppl.json"
    p = subprocess.run([sys.executable, "-m", "snakemake", target,
                        "--profile", "slurm", *FAST_STATUS, "--configfile", str(path)], cwd=ROOT, capture_output=True,
                       text=True, env=user_env(), timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert "SLURM would never start these jobs" in out and "perplexity (1 jobs)" in out, out[-3000:]
    assert "Requested node configuration is not available" in out, out[-3000:]  # SLURM's own reason
    assert re.search(r"sbatch --test-only .*-p debug .*--gpus=16", out), out[-3000:]  # the request, as submitted
    assert not re.findall(r"SLURM jobid (\d+)", out)  # nothing submitted
