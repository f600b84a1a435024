import pytest

from pi_repro.launch import allocation_nodelist, head_node, launch_command, parse_time_left, stop_time

PROG = ["workflow/scripts/finetune.py", "--init", "x"]


def test_single_process_and_single_node():
    assert launch_command(PROG, python="py") == ["py", "-u", *PROG]
    cmd = launch_command(PROG, procs_per_node=8, gpus_per_node=8, python="py")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"] and "--standalone" in cmd and "--nproc-per-node=8" in cmd
    assert cmd[-3:] == PROG


def test_multi_node_is_one_launcher_per_node_with_rendezvous_at_the_head():
    env = {"SLURM_JOB_ID": "4711", "SLURM_JOB_NODELIST": "gpu[01-16]"}
    cmd = launch_command(PROG, nodes=16, procs_per_node=8, gpus_per_node=8, cpus_per_node=64, env=env,
                         head="gpu01", python="py")
    srun, rest = cmd[:cmd.index("py")], cmd[cmd.index("py"):]
    assert srun == ["srun", "--nodes=16", "--ntasks=16", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                    "--cpus-per-task=64", "--gpus-per-node=8"]
    assert "--nnodes=16" in rest and "--nproc-per-node=8" in rest and "--rdzv-backend=c10d" in rest
    assert "--rdzv-endpoint=gpu01:30211" in rest and "--rdzv-id=pi-4711" in rest
    assert rest[-3:] == PROG


def test_bad_launches_are_refused_with_a_reason():
    with pytest.raises(RuntimeError, match="SLURM allocation"):
        launch_command(PROG, nodes=2, env={})
    with pytest.raises(ValueError, match="one process"):
        launch_command(PROG, procs_per_node=2, mode="python")
    with pytest.raises(ValueError, match="several nodes"):
        launch_command(PROG, nodes=2, mode="torchrun")


def fake_slurm(outputs: dict):
    """A stand-in for squeue/scontrol: answers from ``outputs`` keyed by the command's first two words and
    records each call."""
    calls = []

    def run(cmd):
        calls.append(cmd)
        return outputs[" ".join(cmd[:2])]

    return run, calls


def test_hosts_come_from_the_job_id_when_the_executor_strips_the_nodelist():
    # Snakemake's jobstep plugin keeps only SLURM_JOB_ID (and a few identity variables) for mpi jobs
    run, calls = fake_slurm({"squeue -h": "gpu[03-06]", "scontrol show": "gpu03\ngpu04\ngpu05\ngpu06"})
    assert head_node({"SLURM_JOB_ID": "4711"}, run) == "gpu03"
    assert calls[0] == ["squeue", "-h", "-j", "4711", "-o", "%N"]
    assert calls[1] == ["scontrol", "show", "hostnames", "gpu[03-06]"]
    run, calls = fake_slurm({"scontrol show": "gpu01 gpu02"})
    assert head_node({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "gpu[01-02]"}, run) == "gpu01"
    assert [c[0] for c in calls] == ["scontrol"]  # no query when the environment has the list
    with pytest.raises(RuntimeError, match="SLURM_JOB_ID"):
        allocation_nodelist({}, run)


@pytest.mark.parametrize("text,seconds", [("1-02:03:04", 93784), ("02:03:04", 7384), ("03:04", 184),
                                          ("0:30", 30), ("UNLIMITED", None), ("NOT_SET", None)])
def test_time_left_in_slurms_formats(text, seconds):
    assert parse_time_left(text) == seconds


def test_stop_time_is_the_margin_before_the_jobs_limit():
    run, _ = fake_slurm({"squeue -h": "1:00:00"})
    assert stop_time(600, {"SLURM_JOB_ID": "7"}, run, now=1000.0) == 1000.0 + 3600 - 600
    assert stop_time(600, {}, run) is None  # not under SLURM: no limit
    run, _ = fake_slurm({"squeue -h": "UNLIMITED"})
    assert stop_time(600, {"SLURM_JOB_ID": "7"}, run) is None
