"""A local run killed with SIGKILL mid-fine-tune resumes when rerun, to weights bitwise equal to an uninterrupted
run's; nothing finished is recomputed. Two clean runs give byte-identical tables."""
import json
import shutil
import subprocess

import pytest
import torch

from interrupt import ROOT, final_weights, kill_group, reference_and_fresh_run, snakemake_cmd, wait_for_checkpoint

pytestmark = pytest.mark.slow


def test_sigkill_mid_finetune_resumes_to_identical_weights(tmp_path):
    cfg, target = reference_and_fresh_run(tmp_path, "kill")
    proc = subprocess.Popen(snakemake_cmd("--configfile", str(cfg), "--cores", "2", target), cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = wait_for_checkpoint("kill-test", proc)
    kill_group(proc)
    assert not (ROOT / target).exists()
    base = ROOT / "results/kill-test/models/tiny/base/model.safetensors"
    base_mtime = base.stat().st_mtime_ns
    subprocess.run(snakemake_cmd("--configfile", str(cfg), "--unlock"), cwd=ROOT, check=True, capture_output=True)
    p = subprocess.run(snakemake_cmd("--configfile", str(cfg), "--cores", "2", "--rerun-incomplete", target),
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((ROOT / target).read_text())
    assert manifest["resumed_from"] and int(manifest["resumed_from"].rsplit("-", 1)[1]) >= int(ckpt.name.split("-")[1])
    assert base.stat().st_mtime_ns == base_mtime  # the finished base model was not recomputed
    a, b = final_weights("kill-ref"), final_weights("kill-test")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_clean_smoke_runs_give_byte_identical_tables():
    runs = ("determinism-a", "determinism-b")
    for run in runs:
        shutil.rmtree(ROOT / "results" / run, ignore_errors=True)
        subprocess.run(snakemake_cmd("--configfile", "config/smoke.yaml", "--config", f"run={run}", "--cores", "2"),
                       cwd=ROOT, check=True, capture_output=True)
    for t in ("table1", "table2", "table3"):
        for ext in ("csv", "md", "tex"):
            a = (ROOT / "results" / runs[0] / "tables" / f"{t}.{ext}").read_bytes()
            assert a == (ROOT / "results" / runs[1] / "tables" / f"{t}.{ext}").read_bytes(), f"{t}.{ext}"
