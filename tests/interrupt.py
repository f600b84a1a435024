"""Helpers for the interruption tests: a smoke configuration with a longer fine-tune, and its final weights."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from safetensors.torch import load_file
from conftest import smoke_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def long_finetune_config(tmp_path: Path, run: str, steps: int = 40, resume_every: int = 5,
                         checkpoints: list[int] | None = None, cluster: dict | None = None,
                         train_runtime: int | None = None) -> tuple[Path, str]:
    """smoke.yaml with one PI fine-tune of ``steps`` steps (resume state every ``resume_every``; exports at
    ``checkpoints``, default 0, steps/2 and steps); returns (config, target)."""
    cfg = smoke_config()
    cfg["run"] = run
    cfg["train"]["resume_every"] = resume_every
    ext = {"size": "tiny", "method": "PI", "ctx": 64, "steps": steps,
           "checkpoints": checkpoints or [0, steps // 2, steps]}
    if train_runtime:
        ext["resources"] = {"train_runtime": train_runtime}
    cfg["extensions"] = [ext]
    if cluster:
        cfg["cluster"] = cluster
    for spec in cfg["tables"].values():  # rows of the models this config keeps: the base model and PI-64
        if "rows" in spec:
            spec["rows"] = [{k: v for k, v in r.items() if k != "steps"}  # smoke's steps are not this fine-tune's
                            for r in spec["rows"] if r["method"] in ("None", "PI")]
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, f"results/{run}/models/tiny/PI-64/finetune.json"


def snakemake_cmd(*args) -> list[str]:
    """Fine-tunes on one thread: bitwise comparisons need it (with two threads, about one CPU fine-tune in ten
    differs from the others at the 1e-7 level; measured, see docs/architecture.md "Determinism")."""
    return [sys.executable, "-m", "snakemake", *args, "--set-threads", "finetune=1"]


def wait_for_checkpoint(run: str, proc: subprocess.Popen, timeout: float = 600, minimum: int = 10) -> Path:
    """Wait until the fine-tune has saved resume state at step >= ``minimum``; return that checkpoint. Fails
    at once if ``proc`` (the Snakemake run) ends first."""
    work = ROOT / "results" / run / "models/tiny/PI-64/_trainer"
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = [c for c in work.glob("checkpoint-*") if (c / "trainer_state.json").is_file()
                and int(c.name.split("-")[1]) >= minimum]
        if done:
            return done[0]
        if proc.poll() is not None:
            raise RuntimeError(f"snakemake ended (exit {proc.returncode}) before a resume checkpoint was written")
        time.sleep(0.5)
    raise TimeoutError(f"no resume checkpoint under {work} after {timeout} s")


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def final_weights(run: str, steps: int = 40) -> dict:
    return load_file(ROOT / "results" / run / f"models/tiny/PI-64/step{steps}/model.safetensors")
