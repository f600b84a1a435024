import pytest

from pi_repro.launch import launch_command

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
