"""The audit of a results folder: provenance of every artefact behind the run's targets (from the jobs' records,
pi_repro.provenance), verification of a folder against its manifest, and determinism re-execution of recorded
jobs. Paths in the manifest are relative to the run folder, so a copied or received folder verifies where it lies.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from . import provenance as P

MANIFEST = "audit/provenance.json"
# keys of records that measure time or place rather than results: left out of determinism comparisons
VOLATILE_KEYS = ("seconds", "wall_s", "elapsed_s", "tokens_per_s", "docs_per_s", "timestamp", "start", "end",
                 "train_runtime", "train_samples_per_second", "train_steps_per_second", "date", "host",
                 "throughput")
# files that record where a job ran rather than what it computed (the Trainer's pickled arguments: output paths)
VOLATILE_FILES = ("training_args.bin",)


def rel(path: str | Path, run_dir: str | Path) -> str:
    """``path`` relative to the run folder (as written in the manifest), or as given when outside it."""
    p, r = Path(path).resolve(), Path(run_dir).resolve()
    try:
        return p.relative_to(r).as_posix()
    except ValueError:
        return Path(path).as_posix()


def producers(jobs: list[dict]) -> dict[str, dict]:
    """Output path → the newest job that wrote it (a rerun or a resubmission supersedes older records)."""
    out = {}
    for job in jobs:  # oldest first
        for p in job["outputs"]:
            out[os.path.normpath(p)] = job
    return out


def producer_of(path: str, by_output: dict[str, dict]) -> tuple[str, dict] | None:
    """The job that produced ``path``: an exact output, else the nearest output folder that contains it."""
    p = os.path.normpath(path)
    while True:
        if p in by_output:
            return p, by_output[p]
        parent = os.path.dirname(p)
        if parent == p or not parent:
            return None
        p = parent


def upstream(targets: list[str], jobs: list[dict], run_dir: str | Path) -> tuple[dict[str, dict], list[str]]:
    """Every artefact the targets derive from (artefact path → its producing job) and the paths in the run folder
    that no job recorded. Shipped inputs outside the run folder are not artefacts: each job names them with their
    digest among its inputs. A folder no job wrote stands for the recorded outputs inside it."""
    by_output = producers(jobs)
    run = Path(run_dir).resolve()
    seen, unrecorded, todo = {}, [], list(targets)
    while todo:
        t = todo.pop()
        if run not in Path(t).resolve().parents:
            continue
        hit = producer_of(t, by_output)
        if hit is None:
            inside = [o for o in by_output if Path(t).resolve() in Path(o).resolve().parents]
            todo += inside
            if not inside:
                unrecorded.append(t)
            continue
        path, job = hit
        if path in seen:
            continue
        seen[path] = job
        todo += [i for i in job["inputs"] if not i.endswith(".py")]
    return seen, sorted(set(unrecorded))


def majority(values: list) -> object:
    return Counter(values).most_common(1)[0][0] if values else None


def build(run_dir: str | Path, targets: list[str], config_sha: str | None = None) -> dict:
    """The provenance manifest of the run's targets: every upstream artefact with its recorded sha256, the job
    that made it (command line, commit, code and config digests, packages, hardware, SLURM job, wall time) and
    its inputs' digests; the problems found now (missing, changed since production, mixed provenance)."""
    run_dir = Path(run_dir)
    jobs = P.load_jobs(run_dir)
    arts, unrecorded = upstream(targets, jobs, run_dir)
    by_output = producers(jobs)
    artefacts, job_index, shipped = {}, {}, {}
    for path, job in sorted(arts.items()):
        key = rel(job["record"], run_dir)
        if key not in job_index:
            job_index[key] = {k: job[k] for k in ("script", "argv", "run_dir", "start", "end", "wall_s", "commit",
                                                  "dirty", "code_sha256", "config_sha256", "packages", "hardware",
                                                  "env", "slurm") if k in job}
            job_index[key]["inputs"] = {rel(i, run_dir): _input_digest(i, by_output, shipped) for i in job["inputs"]}
            job_index[key]["outputs"] = {rel(o, run_dir): d for o, d in job["outputs"].items()}
        files = job["files"].get(path)
        artefacts[rel(path, run_dir)] = {"sha256": job["outputs"][path], "kind": "file" if files is None else "folder",
                                         "job": key, **({} if files is None else {"files": files})}
    manifest = {"run_dir": run_dir.as_posix(), "created": time.time(), "config_sha256": config_sha,
                "audit_code": P.git_state(), "targets": [rel(t, run_dir) for t in targets],
                "unrecorded": [rel(u, run_dir) for u in unrecorded], "artefacts": artefacts, "jobs": job_index}
    manifest["problems"] = verify_manifest(manifest, run_dir)
    return manifest


def _input_digest(path: str, by_output: dict, shipped: dict) -> str | None:
    """An input's sha256 as its producer recorded it (a file or folder inside a recorded folder: from that folder's
    per-file digests, so no checkpoint is hashed twice), else hashed now, once per build (``shipped``: the cache of
    shipped files and folders)."""
    hit = producer_of(path, by_output)
    norm = os.path.normpath(path)
    if hit and hit[0] == norm:
        return hit[1]["outputs"][hit[0]]
    if hit and hit[0] in hit[1].get("files", {}):
        sub = Path(norm).relative_to(hit[0]).as_posix()
        files = hit[1]["files"][hit[0]]
        if sub in files:
            return files[sub]
        inside = {f[len(sub) + 1:]: d for f, d in files.items() if f.startswith(sub + "/")}
        return P.folder_digest(inside) if inside else None
    if norm not in shipped:
        shipped[norm] = P.digest(path) if os.path.exists(path) else None
    return shipped[norm]


def verify_manifest(manifest: dict, run_dir: str | Path) -> list[dict]:
    """Re-hash every artefact of ``manifest`` under ``run_dir``; a problem per artefact missing, changed, or made
    by a different commit / code / config than the rest (the majority of the manifest's jobs)."""
    run_dir = Path(run_dir)
    problems = []
    jobs = manifest["jobs"]
    # not the config's digest: after a partial rerun the jobs legitimately carry several; whether each was made
    # with the settings the config now gives it is ``stale_settings``'s question
    for field in ("commit", "code_sha256"):
        common = majority([j.get(field) for j in jobs.values()])
        for key, j in sorted(jobs.items()):
            if j.get(field) != common:
                outs = sorted(a for a, v in manifest["artefacts"].items() if v["job"] == key)
                problems += [{"path": a, "problem": f"mixed {field}",
                              "detail": f"made with {field} {j.get(field)}, the rest with {common}"} for a in outs]
    problems += [{"path": u, "problem": "unrecorded", "detail": "no job recorded writing it (made by code older "
                  "than the provenance records, or copied in): rerun its job"} for u in manifest["unrecorded"]]
    dirty = sorted(a for a, v in manifest["artefacts"].items() if jobs[v["job"]].get("dirty"))
    for path, art in sorted(manifest["artefacts"].items()):
        p = run_dir / path
        if not p.exists():
            problems.append({"path": path, "problem": "missing", "detail": "not in the folder"})
        elif art.get("files") is not None and p.is_dir():
            now = P.file_digests(p)
            for f in sorted(set(now) | set(art["files"])):
                if f not in now:
                    problems.append({"path": f"{path}/{f}", "problem": "missing", "detail": f"a file of {path}"})
                elif f not in art["files"]:
                    problems.append({"path": f"{path}/{f}", "problem": "changed", "detail": f"not in {path} when "
                                     f"{jobs[art['job']]['script']} wrote it"})
                elif now[f] != art["files"][f]:
                    problems.append({"path": f"{path}/{f}", "problem": "changed", "detail": "sha256 differs from the "
                                     f"one recorded when {jobs[art['job']]['script']} wrote it"})
        elif P.digest(p) != art["sha256"]:
            problems.append({"path": path, "problem": "changed",
                             "detail": "sha256 differs from the one recorded when "
                                       f"{jobs[art['job']]['script']} wrote it"})
    if dirty:  # a warning, not a failure: the commit alone does not pin the code (code_sha256 does)
        problems.append({"path": f"{len(dirty)} artefacts", "problem": "dirty tree", "warning": True,
                         "detail": "made from a working tree with uncommitted changes (see code_sha256)"})
    return problems


def failures(problems: list[dict]) -> list[dict]:
    return [p for p in problems if not p.get("warning")]


# The manifest and report of the last audit that passed, and those of a failed audit: beside the rule's outputs,
# which Snakemake deletes when it reruns the audit or the audit fails (so a failed audit never loses the last good)
LAST_GOOD = "audit/last-good"
FAILED = "audit/failed"


def manifest_path(run_dir: str | Path) -> tuple[Path, str | None]:
    """The manifest to verify against: the audit's own, else the last one that passed (with a note saying so)."""
    path = Path(run_dir) / MANIFEST
    if path.is_file():
        return path, None
    good = Path(run_dir) / LAST_GOOD / Path(MANIFEST).name
    if good.is_file():
        failed = Path(run_dir) / FAILED / Path(MANIFEST).name
        why = f"the last audit failed (its manifest: {failed})" if failed.is_file() else "the audit is being rerun"
        return good, f"{why}: verifying against the last audit that passed ({good})"
    raise FileNotFoundError(f"{path}: no audit manifest (run `snakemake audit` for this run first)")


def verify(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """Verify a results folder against its manifest (``manifest_path``), rerunning nothing."""
    path, note = manifest_path(run_dir)
    manifest = json.loads(path.read_text())
    if note:
        manifest["note"] = note
    return manifest, verify_manifest(manifest, run_dir)


# ------------------------------------------------------------------------------------ stale settings
SHELL_OPERATORS = set("();<>|&")


def script_argv(command: str) -> list[str] | None:
    """The command line of the last entry point (``workflow/scripts/*.py``) a rule's shell command runs: its
    words up to the first shell operator (a redirection, a pipe, a closing parenthesis)."""
    import shlex

    lex = shlex.shlex(command, posix=True, punctuation_chars="();<>|&")
    lex.whitespace_split = True
    words = list(lex)
    starts = [i for i, w in enumerate(words) if w.startswith("workflow/scripts/") and w.endswith(".py")]
    if not starts:
        return None
    out = []
    for w in words[starts[-1]:]:
        if w and set(w) <= SHELL_OPERATORS:
            break
        out.append(w)
    return out


def planned_jobs(dry_run: str) -> list[dict]:
    """The jobs of a Snakemake dry run printed with their shell commands (``-n -p``): rule, outputs, argv."""
    jobs, cur = [], None
    for line in dry_run.splitlines():
        head = line.strip()
        if (head.startswith("rule ") or head.startswith("localrule ")) and head.endswith(":"):
            cur = {"rule": head.split()[1].rstrip(":"), "outputs": [], "argv": None}
            jobs.append(cur)
        elif cur is not None and head.startswith("output: "):
            cur["outputs"] = [o.strip() for o in head[len("output: "):].split(", ")]
        elif cur is not None and line.startswith("Shell command: "):
            cur["argv"] = script_argv(line[len("Shell command: "):])
    return jobs


def snakemake_dry_run(repo: str | Path, configfiles: list[str], overrides: dict, target: str = "all") -> str:
    """Every job the config gives (``--forceall``: whether or not it would rerun), with its shell command."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for f in configfiles:
            if not Path(f).is_file():
                raise FileNotFoundError(f"config file {f} (the one the run was made with) does not exist: give "
                                        "--configfile")
            files.append(str(f))
        if overrides:  # --config values: applied after the files, as Snakemake applies them
            extra = Path(tmp) / "overrides.json"
            extra.write_text(json.dumps(overrides))
            files.append(str(extra))
        args = ["--configfile", *files] if files else []  # one option: a repeated --configfile keeps the last only
        p = subprocess.run([sys.executable, "-m", "snakemake", target, "--dry-run", "--forceall", "--printshellcmds",
                            "--nolock", *args], cwd=repo, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"snakemake could not plan the config's jobs:\n{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout + p.stderr


def _options(argv: list[str]) -> dict[str, list[str]]:
    """``--key value`` (or ``--key=value``) pairs; a ``--flag`` followed by another option holds no value; every
    other word is positional (key "")."""
    out, key = {"": []}, None
    for w in argv[1:]:
        if w.startswith("--"):
            key, _, value = w.partition("=")
            out[key] = [value] if value else []
            key = None if value else key
        elif key is not None:
            out[key].append(w)
            key = None
        else:
            out[""].append(w)
    return out


def _json_changes(old, new, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new), key=str)
                for c in _json_changes(old.get(k, "(none)"), new.get(k, "(none)"), f"{where}.{k}" if where else k)]
    return [] if old == new else [f"{where or 'value'} {json.dumps(old)} -> {json.dumps(new)}"]


def argv_changes(recorded: list[str], planned: list[str]) -> list[str]:
    """What differs between the command line a job ran and the one the config gives it now, option by option
    (a JSON option, key by key): ``["--stride 8 -> 4", "--hp: lr 0.001 -> 0.002"]``."""
    a, b = _options(recorded), _options(planned)
    out = []
    for k in sorted(set(a) | set(b), key=lambda k: (k == "", k)):
        x, y = a.get(k), b.get(k)
        if x == y:
            continue
        name = k or "inputs"
        if x and y and len(x) == len(y) == 1 and x[0][:1] in "{[" and y[0][:1] in "{[":
            try:
                out += [f"{name}: {c}" for c in _json_changes(json.loads(x[0]), json.loads(y[0]))]
                continue
            except ValueError:
                pass
        show = lambda v: "(absent)" if v is None else " ".join(v) or "(set)"  # noqa: E731
        out.append(f"{name} {show(x)} -> {show(y)}")
    return out


def _producer(path: str, made_by: dict[str, str]) -> str | None:
    """The job key that made ``path``, or the folder that holds it."""
    p = path
    while p and p not in made_by:
        p = os.path.dirname(p)
    return made_by.get(p)


def stale_settings(manifest: dict, run_dir: str | Path, dry_run: str) -> list[dict]:
    """A problem for every artefact whose job ran with other settings than the config now gives it (its command
    line, compared option by option), and for every artefact made from one (stale upstream); a warning for
    artefacts the config no longer makes and for outputs it asks for that the folder lacks. The folder is compared
    with the config's run (``results/{run}/``) wherever it lies: paths under either run folder compare as equal."""
    planned = planned_jobs(dry_run)
    prefixes = Counter("/".join(o.split("/")[:2]) for j in planned for o in j["outputs"] if o.startswith("results/"))
    if not prefixes:
        raise ValueError("the config's dry run planned no job under results/: nothing to compare with")
    prefix = prefixes.most_common(1)[0][0] + "/"
    by_output = {}
    for job in planned:
        for o in job["outputs"]:
            if o.startswith(prefix):
                by_output[o[len(prefix):]] = job

    def here(argv: list[str], run_prefix: str) -> list[str]:  # the run folder's paths as "{run}/..."
        return ["{run}/" + w[len(run_prefix):] if w.startswith(run_prefix) else w for w in argv]

    jobs, arts = manifest["jobs"], manifest["artefacts"]
    outs_of = {}
    for path, art in arts.items():
        outs_of.setdefault(art["job"], []).append(path)
    stale, problems, gone = {}, [], []
    for key, job in sorted(jobs.items()):
        match = next((by_output[o] for o in job["outputs"] if o in by_output), None)
        if match is None:
            gone += outs_of.get(key, [])
            continue
        if match["argv"] is None:
            continue
        made_in = (job.get("run_dir") or manifest["run_dir"]).rstrip("/") + "/"
        changes = argv_changes(here(job["argv"], made_in), here(match["argv"], prefix))
        if changes:
            stale[key] = (f"made with other settings than the config now gives rule {match['rule']}: "
                          + "; ".join(changes))
    made_by = {o: key for key, j in jobs.items() for o in j["outputs"]}
    changed = True
    while changed:  # made from a stale artefact: stale too
        changed = False
        for key, job in jobs.items():
            if key in stale:
                continue
            src = next((k for k in (_producer(i, made_by) for i in job["inputs"]) if k in stale), None)
            if src is not None:
                stale[key] = f"made from {', '.join(sorted(jobs[src]['outputs']))[:200]}, which is stale"
                changed = True
    for key, why in sorted(stale.items()):
        problems += [{"path": p, "problem": "stale", "detail": why} for p in sorted(outs_of.get(key, []))]
    if gone:
        problems.append({"path": f"{len(gone)} artefacts", "problem": "not in the config", "warning": True,
                         "detail": f"the config no longer makes them (e.g. {sorted(gone)[0]})"})
    lacking = sorted(o for o in by_output if o not in arts and not (Path(run_dir) / o).exists())
    if lacking:
        problems.append({"path": f"{len(lacking)} outputs", "problem": "not made yet", "warning": True,
                         "detail": f"the config asks for them and the folder lacks them (e.g. {lacking[0]}): run "
                                   "Snakemake"})
    return problems


# ------------------------------------------------------------------------------------------ determinism
def pick_jobs(manifest: dict, plan: dict[str, int]) -> list[str]:
    """The jobs to re-execute: for each script of ``plan`` its ``n`` cheapest recorded jobs (by wall time)."""
    out = []
    for script, n in plan.items():
        mine = sorted((j["wall_s"], key) for key, j in manifest["jobs"].items() if Path(j["script"]).stem == script)
        out += [key for _, key in mine[:n]]
    return out


def rerun(job: dict, run_dir: str | Path, scratch: str | Path, timeout: float = 3600) -> tuple[dict, dict]:
    """Run a recorded job again from its recorded inputs with every output redirected under ``scratch``; return
    (original output → new output path, the run's facts)."""
    run_dir, scratch = Path(run_dir), Path(scratch)
    mapping = {o: str(scratch / rel(o, run_dir)) for o in job["argv_outputs"]}
    argv = [mapping.get(w, w) for w in job["argv"]]
    for new in mapping.values():
        Path(new).parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (P.RUN_DIR_ENV, P.CONFIG_ENV)}
    env.update(job.get("env") or {})
    env[P.RECORDING_ENV] = "off"
    t = time.time()
    p = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout)
    facts = {"returncode": p.returncode, "wall_s": round(time.time() - t, 3), "stderr_tail": p.stderr[-2000:]}
    return mapping, facts


def compare(a: str | Path, b: str | Path, tol: float = 0.0, replace: list[tuple[str, str]] = (),
            exclude: tuple[str, ...] = ()) -> dict:
    """Compare a recorded output ``a`` with its re-execution ``b``: JSON as values (floats within relative ``tol``;
    volatile keys left out; the re-execution's paths read back as the originals through ``replace``; digests
    compared only when ``tol`` is 0), npz / safetensors as arrays, folders file by file (``exclude``: subfolders
    that other jobs wrote), anything else byte for byte. Returns {"equal", "how", "max_rel_diff", "differences"}."""
    a, b = Path(a), Path(b)
    if a.is_dir():
        skip = lambda f: any(f == e or f.startswith(e + "/") for e in exclude) or f.rsplit("/", 1)[-1] in VOLATILE_FILES  # noqa: E731
        fa = {x for x in (f.relative_to(a).as_posix() for f in P.folder_files(a)) if not skip(x)}
        fb = ({x for x in (f.relative_to(b).as_posix() for f in P.folder_files(b)) if not skip(x)}
              if b.is_dir() else set())
        diffs, worst = [f"only in one: {x}" for x in sorted(fa ^ fb)], 0.0
        for f in sorted(fa & fb):
            r = compare(a / f, b / f, tol, replace)
            worst = max(worst, r["max_rel_diff"])
            diffs += [f"{f}: {d}" for d in r["differences"]]
        return {"equal": not diffs, "how": "folder", "max_rel_diff": worst, "differences": diffs[:20]}
    if not b.exists():
        return {"equal": False, "how": "missing", "max_rel_diff": math.inf, "differences": [f"{b} not written"]}
    suffix = a.name.split(".", 1)[-1] if "." in a.name else ""
    if suffix in ("json", "jsonl"):
        load = (lambda p: json.loads(p.read_text())) if suffix == "json" else \
            (lambda p: [json.loads(x) for x in p.read_text().splitlines() if x.strip()])
        diffs, worst = _json_diff(load(a), load(b), tol, replace, "")
        return {"equal": not diffs, "how": "values", "max_rel_diff": worst, "differences": diffs[:20]}
    if suffix in ("npz", "safetensors"):
        diffs, worst = _array_diff(a, b, suffix, tol)
        return {"equal": not diffs, "how": "arrays", "max_rel_diff": worst, "differences": diffs[:20]}
    same = a.read_bytes() == b.read_bytes()
    return {"equal": same, "how": "bytes", "max_rel_diff": 0.0 if same else math.inf,
            "differences": [] if same else ["bytes differ"]}


def _rel_diff(x: float, y: float) -> float:
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    return abs(x - y) / max(abs(x), abs(y), 1e-300)


def _json_diff(x, y, tol, replace, where) -> tuple[list[str], float]:
    if isinstance(x, dict) and isinstance(y, dict):
        diffs, worst = [], 0.0
        for k in sorted(set(x) | set(y)):
            if k in VOLATILE_KEYS or (tol > 0 and k == "sha256"):
                continue
            if k not in x or k not in y:
                diffs.append(f"{where}.{k}: only in one")
                continue
            d, w = _json_diff(x[k], y[k], tol, replace, f"{where}.{k}")
            diffs, worst = diffs + d, max(worst, w)
        return diffs, worst
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return [f"{where}: length {len(x)} vs {len(y)}"], math.inf
        diffs, worst = [], 0.0
        for i, (u, v) in enumerate(zip(x, y)):
            d, w = _json_diff(u, v, tol, replace, f"{where}[{i}]")
            diffs, worst = diffs + d, max(worst, w)
        return diffs, worst
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        r = _rel_diff(float(x), float(y))
        return ([f"{where}: {x} vs {y}"] if r > tol else []), r
    if isinstance(x, str) and isinstance(y, str):
        for orig, new in replace:
            y = y.replace(new, orig)
    return ([] if x == y else [f"{where}: {x!r} vs {y!r}"]), (0.0 if x == y else math.inf)


def _array_diff(a: Path, b: Path, suffix: str, tol: float) -> tuple[list[str], float]:
    import numpy as np

    if suffix == "npz":
        with np.load(a) as za, np.load(b) as zb:
            xa, xb = {k: za[k] for k in za.files}, {k: zb[k] for k in zb.files}
    else:
        from safetensors.numpy import load_file

        xa, xb = load_file(a), load_file(b)
    if sorted(xa) != sorted(xb):
        return [f"arrays {sorted(set(xa) ^ set(xb))} only in one"], math.inf
    diffs, worst = [], 0.0
    for k in sorted(xa):
        u, v = xa[k], xb[k]
        if u.shape != v.shape or u.dtype != v.dtype:
            diffs.append(f"{k}: {u.shape} {u.dtype} vs {v.shape} {v.dtype}")
            worst = math.inf
            continue
        if np.array_equal(u, v):
            continue
        if not np.issubdtype(u.dtype, np.floating):
            diffs.append(f"{k}: values differ")
            worst = math.inf
            continue
        u64, v64 = u.astype(np.float64), v.astype(np.float64)
        r = float(np.max(np.abs(u64 - v64)) / max(float(np.max(np.abs(u64))), 1e-300))
        worst = max(worst, r)
        if r > tol:
            diffs.append(f"{k}: max relative difference {r:.3g}")
    return diffs, worst


def determinism(manifest: dict, run_dir: str | Path, scratch: str | Path, plan: dict[str, int],
                tolerance: dict[str, float], progress=print, jobs: int = 1) -> list[dict]:
    """Re-execute the jobs ``plan`` picks (``jobs`` at a time) and compare each output with the recorded one
    (tolerance per script, 0 = exact). The scratch folder is removed afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    run_dir, scratch = Path(run_dir), Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)

    def check(key: str) -> dict:
        job = dict(manifest["jobs"][key])
        job["argv_outputs"] = [w for w in job["argv"][1:] if rel(w, run_dir) in job["outputs"]]
        tol = float(tolerance.get(Path(job["script"]).stem, 0.0))
        progress(f"determinism: re-executing {job['script']} ({key}, recorded {job['wall_s']} s)")
        mapping, facts = rerun(job, run_dir, scratch)  # outputs under scratch/<their own path>: no two collide
        comps = []
        pairs = sorted(mapping.items(), key=lambda kv: -len(kv[1]))
        others = [o for k, j in manifest["jobs"].items() if k != key for o in j["outputs"]]
        for orig, new in mapping.items():
            mine = rel(orig, run_dir)
            if facts["returncode"] != 0:
                c = {"equal": False, "how": "failed", "max_rel_diff": math.inf,
                     "differences": [facts["stderr_tail"][-500:]]}
            else:
                nested = tuple(o[len(mine) + 1:] for o in others if o.startswith(mine + "/"))
                c = compare(orig, new, tol, replace=pairs, exclude=nested)
            comps.append({"output": mine, **c})
        result = {"job": key, "script": job["script"], "tolerance": tol, "recorded_wall_s": job["wall_s"],
                  **facts, "equal": all(c["equal"] for c in comps), "outputs": comps}
        progress(f"  {job['script']}: {'same' if result['equal'] else 'DIFFERENT'}: " +
                 ", ".join(f"{c['output']} ({c['how']}, max rel diff {c['max_rel_diff']:.3g})" for c in comps))
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(check, pick_jobs(manifest, plan)))  # in the plan's order
    shutil.rmtree(scratch, ignore_errors=True)
    return results
