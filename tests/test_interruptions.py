"""A local run killed mid-fine-tune resumes when rerun, to weights bitwise equal to an uninterrupted run's, and
nothing finished is recomputed: killed with SIGKILL at an arbitrary point, and killed exactly between the export
of an intermediate checkpoint and the Trainer's resume state (the export must not be lost). Two clean smoke
runs with default threads give the same tables."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import assert_same_tables
from interrupt import ROOT, final_weights, kill_group, long_finetune_config, snakemake_cmd, wait_for_checkpoint

pytestmark = pytest.mark.slow

STEPS = 40


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted fine-tune (one thread): exports at steps 0, 20 and 40."""
    cfg, target = long_finetune_config(tmp_path_factory.mktemp("ref"), "kill-ref", steps=STEPS)
    shutil.rmtree(ROOT / "results/kill-ref", ignore_errors=True)
    subprocess.run(snakemake_cmd("--configfile", str(cfg), "--cores", "2", target), cwd=ROOT, check=True,
                   capture_output=True)
    return {s: final_weights("kill-ref", s) for s in (STEPS // 2, STEPS)}


def fresh(tmp_path, run):
    shutil.rmtree(ROOT / "results" / run, ignore_errors=True)
    return long_finetune_config(tmp_path, run, steps=STEPS)


def rerun(cfg, target):
    subprocess.run(snakemake_cmd("--configfile", str(cfg), "--unlock"), cwd=ROOT, check=True, capture_output=True)
    p = subprocess.run(snakemake_cmd("--configfile", str(cfg), "--cores", "2", "--rerun-incomplete", target),
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads((ROOT / target).read_text())


def assert_weights_equal(reference, run):
    for step, ref in reference.items():
        got = final_weights(run, step)
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), f"step{step} differs"


def test_sigkill_mid_finetune_resumes_to_identical_weights(tmp_path, reference):
    cfg, target = fresh(tmp_path, "kill-test")
    proc = subprocess.Popen(snakemake_cmd("--configfile", str(cfg), "--cores", "2", target), cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = wait_for_checkpoint("kill-test", proc)
    kill_group(proc)
    assert not (ROOT / target).exists()
    base = ROOT / "results/kill-test/models/tiny/base/model.safetensors"
    base_mtime = base.stat().st_mtime_ns
    manifest = rerun(cfg, target)
    assert manifest["resumed_from"] and int(manifest["resumed_from"].rsplit("-", 1)[1]) >= int(ckpt.name.split("-")[1])
    assert base.stat().st_mtime_ns == base_mtime  # the finished base model was not recomputed
    assert_weights_equal(reference, "kill-test")


def test_kill_between_export_and_resume_state_loses_no_export(tmp_path, reference):
    """SIGKILL at step 20 (an intermediate export, also a resume step) between the two writes of that step
    (tests/faults/sitecustomize.py): the rerun must still end with step20 exported, verified and bitwise equal
    to the uninterrupted run's."""
    cfg, target = fresh(tmp_path, "between-test")
    env = dict(os.environ, PI_REPRO_KILL_BETWEEN_WRITES=str(STEPS // 2),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests/faults"), os.environ.get("PYTHONPATH")])))
    p = subprocess.run(snakemake_cmd("--configfile", str(cfg), "--cores", "2", target), cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert p.returncode != 0 and not (ROOT / target).exists(), "the injected kill did not happen"
    out = ROOT / "results/between-test/models/tiny/PI-64"
    exported = (out / f"step{STEPS // 2}/model.safetensors").is_file()
    resumable = (out / f"_trainer/checkpoint-{STEPS // 2}/trainer_state.json").is_file()
    assert exported != resumable, "the kill came before or after both writes, not between them"
    manifest = rerun(cfg, target)
    assert manifest["checkpoints"][f"step{STEPS // 2}"]["probe_error"] < 1e-5
    assert_weights_equal(reference, "between-test")


def test_two_clean_smoke_runs_give_the_same_tables(smoke_run):
    """As docs/architecture.md states it ("Determinism"): default threads (training on 2 threads is not bitwise
    deterministic), tables equal at their printed precision (md, tex) and to 1e-6 relative at full precision
    (csv)."""
    run = "determinism-b"
    shutil.rmtree(ROOT / "results" / run, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "--config", f"run={run}",
                    "--cores", "2"], cwd=ROOT, check=True, capture_output=True)
    assert_same_tables(smoke_run, ROOT / "results" / run)
