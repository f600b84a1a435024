"""Per-job provenance: every entry point (workflow/scripts/*, through _common) records, when its job succeeds, what
it read and wrote and where and how it ran, as one JSON file under ``{run dir}/provenance/jobs/``.

The Snakefile's shell prefix exports the run directory and the config's digest to every job (``PI_RUN_DIR``,
``PI_CONFIG_SHA256``). A job's outputs are the paths on its command line under the run directory that it
created or changed; its inputs the other existing paths. Outputs are hashed when the job ends (the hash the audit
later verifies); inputs are named (the audit links each to the job that produced it). Child processes of a
recorded job (torchrun ranks, srun tasks) do not record themselves.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from .io import sha256_file

RUN_DIR_ENV = "PI_RUN_DIR"
CONFIG_ENV = "PI_CONFIG_SHA256"
RECORDING_ENV = "PI_PROVENANCE_RECORDING"  # set by a recorded job for its children; "off" disables recording
PACKAGES = ("torch", "transformers", "accelerate", "deepspeed", "datasets", "tokenizers", "numpy", "pandas",
            "lm_eval", "rouge_score", "snakemake", "safetensors", "matplotlib")
ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "DS_ACCELERATOR",
            "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PYTHONHASHSEED")
SLURM_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_PARTITION", "SLURM_RESTART_COUNT")
REPO = Path(__file__).resolve().parents[2]


def hidden(name: str) -> bool:
    """Names inside an output folder that are not part of the artefact: resume state, temporary files."""
    return name.startswith((".", "_"))


def digest(path: str | Path) -> str:
    """sha256 of a file; of a folder, the sha256 of its files' digests and relative paths (hidden names skipped)."""
    p = Path(path)
    return sha256_file(p) if p.is_file() else folder_digest(file_digests(p))


def file_digests(p: str | Path) -> dict[str, str]:
    """Relative path → sha256 of every file of a folder (hidden names skipped)."""
    p = Path(p)
    return {f.relative_to(p).as_posix(): digest(f) for f in folder_files(p)}


def folder_digest(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{d}  {name}\n" for name, d in sorted(files.items())).encode()).hexdigest()


def folder_files(p: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not hidden(d))
        out += [Path(root) / f for f in sorted(files) if not hidden(f)]
    return out


def newest_mtime(p: Path) -> float:
    if p.is_file():
        return p.stat().st_mtime
    return max([f.stat().st_mtime for f in folder_files(p)] + [p.stat().st_mtime])


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def path_args(argv: list[str]) -> list[str]:
    """The command-line words that name files or folders that exist (``--key=value`` forms and the string values
    of JSON arguments included)."""
    out = []
    for word in argv:
        parts = word.split("=", 1)[1:] if word.startswith("--") else [word]
        if word[:1] in "{[":
            try:
                parts = _strings(json.loads(word))
            except ValueError:
                pass
        for part in parts:
            if part and not part.startswith("-") and len(part) < 4096 and os.path.exists(part) and part not in out:
                out.append(part)
    return out


def classify(argv: list[str], run_dir: str, start: float) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a job: outputs are paths under ``run_dir`` created or changed since ``start``."""
    run = Path(run_dir).resolve()
    inputs, outputs = [], []
    for p in path_args(argv):
        rp = Path(p).resolve()
        inside = rp == run or run in rp.parents
        (outputs if inside and rp != run and newest_mtime(Path(p)) >= start - 1e-3 else inputs).append(p)
    return inputs, outputs


def git_state(repo: Path = REPO) -> dict:
    def git(*a):
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def code_digest() -> str:
    """sha256 over the workflow's code (Snakefile, rules, schemas, entry points, the pi_repro library). Snakemake
    reruns a job when its rule's code or params change, not when library code does: this names results computed
    by other code even when the commit is the same (a dirty tree)."""
    wf = REPO / "workflow"
    files = [REPO / "Snakefile"] + [f for pat in ("*.py", "*.smk", "*.yaml") for f in wf.rglob(pat)]
    return folder_digest({f.relative_to(REPO).as_posix(): sha256_file(f) for f in files if f.is_file()})


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return out


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # only if the job used torch: never import it just to ask
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out.update(gpus=names, gpu_count=len(names), cuda=torch.version.cuda)
    else:
        out.update(gpus=[], gpu_count=0)
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


def job_key(argv: list[str]) -> str:
    return hashlib.sha256("\0".join(argv).encode()).hexdigest()[:16]


class Recorder:
    """Started when an entry point starts; ``finish`` writes the job's record if the job wrote outputs."""

    def __init__(self, argv: list[str] | None = None):
        self.argv = list(sys.argv if argv is None else argv)
        self.start = time.time()
        self.run_dir = os.environ.get(RUN_DIR_ENV)
        state = os.environ.get(RECORDING_ENV)
        self.active = bool(self.run_dir) and state is None and os.environ.get("RANK", "0") == "0"
        if self.active:
            os.environ[RECORDING_ENV] = "child"  # inherited by torchrun ranks, srun tasks, subprocesses
            # the code as the job starts (an edit while a long job runs must not be credited to it)
            self.code = {**git_state(), "code_sha256": code_digest()}

    def hand_over(self) -> None:
        """Before this process execs another program (scripts/launch.py → torchrun → the script's rank 0): the
        exec'd script records the job instead."""
        if self.active:
            os.environ.pop(RECORDING_ENV, None)
            self.active = False

    def record(self, end: float | None = None) -> dict | None:
        inputs, outputs = classify(self.argv, self.run_dir, self.start)
        if not outputs:
            return None
        end = time.time() if end is None else end
        files = {p: file_digests(p) for p in outputs if Path(p).is_dir()}
        return {
            "script": Path(self.argv[0]).name, "argv": self.argv, "python": sys.executable, "cwd": os.getcwd(),
            "inputs": inputs, "outputs": {p: folder_digest(files[p]) if p in files else digest(p) for p in outputs},
            "files": files,
            "start": self.start, "end": end, "wall_s": round(end - self.start, 3),
            "run_dir": self.run_dir, "config_sha256": os.environ.get(CONFIG_ENV), **self.code,
            "packages": package_versions(),
            "hardware": hardware(), "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
            "slurm": {k: os.environ[k] for k in SLURM_KEYS if k in os.environ} or None,
        }

    def finish(self) -> Path | None:
        if not self.active:
            return None
        rec = self.record()
        if rec is None:
            return None
        from .io import write_json

        path = Path(self.run_dir) / "provenance" / "jobs" / Path(rec["script"]).stem / f"{job_key(self.argv)}.json"
        write_json(path, rec)
        return path


def load_jobs(run_dir: str | Path) -> list[dict]:
    """Every job record of a run, oldest first; a record made where the run folder had another path (the folder
    was copied or moved since) has its paths moved to where the folder is now."""
    jobs = []
    for f in sorted((Path(run_dir) / "provenance" / "jobs").glob("*/*.json")):
        rec = json.loads(f.read_text())
        rec["record"] = str(f)
        made_in = rec.get("run_dir")
        if made_in and os.path.normpath(made_in) != os.path.normpath(str(run_dir)):
            rec = relocated(rec, os.path.normpath(made_in), os.path.normpath(str(run_dir)))
        jobs.append(rec)
    return sorted(jobs, key=lambda r: r["end"])


def relocated(rec: dict, old: str, new: str) -> dict:
    """A job record with every path under the run folder ``old`` (argv, inputs, outputs) moved under ``new``."""
    def move(p: str) -> str:
        return new + p[len(old):] if p == old or p.startswith(old + "/") else p

    return dict(rec, run_dir=new, argv=[move(w) for w in rec["argv"]], inputs=[move(i) for i in rec["inputs"]],
                outputs={move(o): d for o, d in rec["outputs"].items()},
                files={move(o): f for o, f in rec.get("files", {}).items()})


# ------------------------------------------------------------------------------------- verified reading
class ChangedSinceWritten(ValueError):
    """A result file a job is about to read differs from what the job that wrote it recorded."""


def recorded_outputs(run_dir: str | Path) -> dict[str, tuple[str, dict]]:
    """Every output the run's jobs recorded, by path relative to the run folder: (its sha256, the newest job
    record that wrote it); files inside a recorded folder are listed too (a copied or moved run folder reads the
    same: ``load_jobs``)."""
    run = Path(run_dir).resolve()
    out = {}
    for job in load_jobs(run_dir):  # oldest first: a rerun supersedes
        for path, sha in job["outputs"].items():
            try:
                key = Path(path).resolve().relative_to(run).as_posix()
            except ValueError:
                continue
            out[key] = (sha, job)
            for f, d in (job.get("files", {}).get(path) or {}).items():
                out[f"{key}/{f}"] = (d, job)
    return out


def check_read(paths: list[str | Path], what: str = "read") -> None:
    """Refuse, before anything is written, to read a result of this run (a path under ``$PI_RUN_DIR``) whose bytes
    differ from those its job recorded when it wrote it (edited by hand, replaced by another file) or that no job of
    the run recorded writing; every such file is named. Outside a recorded run (no ``$PI_RUN_DIR``: a script run by
    hand, a determinism re-execution) nothing is checked."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    run = Path(run_dir).resolve()
    inside = [p for p in paths if run in Path(p).resolve().parents]
    if not inside:
        return
    written = recorded_outputs(run_dir)
    problems = []
    for p in inside:
        hit = written.get(Path(p).resolve().relative_to(run).as_posix())
        if hit is None:
            problems.append(f"{p}: no job of this run recorded writing it (copied in, or written by hand)")
        elif digest(p) != hit[0]:
            problems.append(f"{p}: its bytes differ from those {hit[1]['script']} recorded when it wrote it "
                            f"({hit[1]['record']}): edited or replaced since")
    if problems:
        raise ChangedSinceWritten(f"refusing to {what} results that are not what their jobs wrote (nothing was "
                                  "written):\n  " + "\n  ".join(problems) + "\nDelete each and run Snakemake again: "
                                  "its job rebuilds it")
