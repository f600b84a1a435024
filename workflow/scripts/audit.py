#!/usr/bin/env python3
"""The audit of a run (rule audit), and the verification of a results folder.

    python workflow/scripts/audit.py verify results/default     re-hash every artefact against the manifest, and
                                                                name those made with other settings than the
                                                                config now gives their jobs ("stale")

verify's exit status: 0 every artefact verified and every applicable claim held; 1 an artefact is missing,
changed, stale, or made by a different commit / code than the rest (each named); 2 no manifest, or the config's
jobs could not be planned; 3 the artefacts verify but a claim of the paper failed on this run (findings: shown,
never hidden). With the audit's manifest gone (a failed or running audit), the last audit that passed is used.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import _common  # noqa: F401
import yaml
from pi_repro import (
    audit,
    paper,
    targets,  # noqa: E402
)
from pi_repro.io import atomic_path, write_html, write_json

EXIT_PROBLEMS, EXIT_CLAIMS = 1, 3


def claims_of(findings: list[dict]) -> dict:
    counts = {s: sum(f["status"] == s for f in findings) for s in ("PASS", "FAIL", "n/a")}
    return {"held": counts["FAIL"] == 0, "counts": counts, "findings": findings}


def fmt(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def summary_md(m: dict, claims: dict, det: list[dict], side: list[dict], problems: list[dict]) -> str:
    jobs = m["jobs"]
    fails = audit.failures(problems)
    commits = sorted({(j.get("commit") or "?")[:12] + ("+dirty" if j.get("dirty") else "") for j in jobs.values()})
    slurm = sorted({j["slurm"]["SLURM_JOB_ID"] for j in jobs.values() if j.get("slurm")})
    hosts = sorted({f"{j['hardware']['cpu']} ({j['hardware']['cpu_count']} CPUs)"
                    + (f", {j['hardware']['gpu_count']} x {j['hardware']['gpus'][0]}" if j["hardware"]["gpus"] else "")
                    for j in jobs.values()})
    pk = next(iter(jobs.values()))["packages"] if jobs else {}
    lines = [f"# Audit of {m['run_dir']}", "",
             f"- **Artefacts**: {len(m['artefacts'])} behind {len(m['targets'])} targets, made by {len(jobs)} jobs; "
             f"{'all verified (sha256 as recorded when written)' if not fails else f'{len(fails)} PROBLEMS'}",
             f"- **Claims**: {claims['counts']['PASS']} held, {claims['counts']['FAIL']} failed, "
             f"{claims['counts']['n/a']} not applicable",
             f"- **Determinism**: {sum(d['equal'] for d in det)} of {len(det)} re-executed jobs reproduced their "
             "outputs",
             f"- **Code**: {', '.join(commits)}; config sha256 {str(m['config_sha256'])[:12]}",
             f"- **Hardware**: {'; '.join(hosts)}" + (f"; SLURM jobs {', '.join(slurm)}" if slurm else ""),
             f"- **Packages**: {', '.join(f'{k} {v}' for k, v in sorted(pk.items()))}",
             f"- **Wall time of the jobs**: {sum(j['wall_s'] for j in jobs.values()) / 60:.1f} min", ""]
    if problems:
        lines += ["## Problems", "", "| Artefact | Problem | Detail |", "|---|---|---|"]
        lines += [f"| {p['path']} | {p['problem']}{' (warning)' if p.get('warning') else ''} | {p['detail']} |"
                  for p in problems] + [""]
    lines += ["## Claims (findings)", "", "| Finding | Status | Where | Numbers |", "|---|---|---|---|"]
    for f in claims["findings"]:
        nums = ", ".join(f"{k} {fmt(v, 4)}" for k, v in (f.get("numbers") or {}).items())
        lines.append(f"| {f['finding']} | {f['status']} | {f.get('where', '')} | {nums.replace('|', '/')} |")
    lines += ["", "## Determinism re-execution", "",
              "| Rule job | Recorded s | Rerun s | Tolerance | Result | Outputs |", "|---|---|---|---|---|---|"]
    for d in det:
        outs = "; ".join(f"{o['output']} ({o['how']}, max rel diff {fmt(o['max_rel_diff'])})" for o in d["outputs"])
        lines.append(f"| {d['script']} | {d['recorded_wall_s']} | {d['wall_s']} | {d['tolerance']} | "
                     f"{'same' if d['equal'] else 'DIFFERENT'} | {outs} |")
    if side:
        ok = sum(r["status"] == "PASS" for r in side)
        lines += ["", f"## The paper side by side: {ok} of {len(side)} cells within tolerance", "",
                  "| Table | Size | Model ctx | Method | Fine-tune on | Column | Paper | Ours | Diff | Tolerance "
                  "| Status |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in side:
            tol = ", ".join(f"{k} {v}" for k, v in (r["tolerance"] or {}).items())
            tol += f": {r['why']}" if r.get("why") else ""  # a kind's own rule says why (pi_repro.kinds.Kind.judge)
            lines.append(f"| {r['table']} | {r['size']} | {r['model_ctx']} | {r['method']} | "
                         f"{r['finetune_data'] or ''} | {r['column']} | {r['value']} | {fmt(r['ours'], 4)} | "
                         f"{fmt(r['diff'], 3)} | {tol} | {r['status']} |")
    return "\n".join(lines) + "\n"


def build(a) -> int:
    cfg = a.config
    from pi_repro import config as C

    C.load_plugins(cfg)  # the kinds of its tables (paper cells, tolerance)
    settings = targets.audit(cfg)
    t = time.time()
    m = audit.build(a.run_dir, a.targets, a.config_sha)
    m["invocation"] = a.invocation  # the config files (and --config values) verify re-reads to find stale settings
    problems = m["problems"]
    for p in problems:
        print(f"audit: {p['problem']}{' (warning)' if p.get('warning') else ''}: {p['path']}: {p['detail']}")
    hard = [p for p in audit.failures(problems) if p["problem"] in ("missing", "changed")]
    if hard:
        failed = Path(a.run_dir) / audit.FAILED
        write_json(failed / Path(a.manifest).name, m)  # beside the last good one, which stays as it was
        print(f"audit: {len(hard)} artefacts are missing or changed since they were written: rerun their jobs "
              f"(this audit's manifest: {failed}; the last audit that passed: {Path(a.run_dir) / audit.LAST_GOOD})")
        return EXIT_PROBLEMS
    print(f"audit: {len(m['artefacts'])} artefacts of {len(m['jobs'])} jobs verified ({time.time() - t:.1f} s)")
    plan = {a.rule_scripts[r]: n for r, n in settings["determinism"]["jobs"].items() if n}
    tol = {a.rule_scripts[r]: v for r, v in settings["determinism"]["tolerance"].items()}
    det = audit.determinism(m, a.run_dir, Path(a.run_dir) / "audit" / "rerun", plan, tol, jobs=a.jobs)
    side = []
    if settings["paper"]:
        cells = paper.load_cells(settings["paper"])
        csvs = {t: f"{a.run_dir}/tables/{t}.csv" for t in cfg["tables"]}
        side = paper.side_by_side(cfg, cells, csvs)
    claims = claims_of(json.loads(Path(a.findings).read_text()))
    write_json(a.manifest, m)
    write_json(a.json, {"run_dir": a.run_dir, "problems": problems, "claims": claims, "determinism": det,
                        "paper": side, "verified": not audit.failures(problems),
                        "reproduced": all(d["equal"] for d in det)})
    text = summary_md(m, claims, det, side, problems)
    with atomic_path(a.md) as tmp:
        tmp.write_text(text)
    write_html(a.html, text, f"Audit of {a.run_dir}")
    good = Path(a.run_dir) / audit.LAST_GOOD
    for f in (a.manifest, a.json, a.md):  # kept where Snakemake never deletes them: the last audit that passed
        write_bytes_atomic(good / Path(f).name, Path(f).read_bytes())
    shutil.rmtree(Path(a.run_dir) / audit.FAILED, ignore_errors=True)
    print(Path(a.md).read_text())
    return 0


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def verify(a) -> int:
    try:
        m, problems = audit.verify(a.run_dir)
    except FileNotFoundError as e:
        print(f"audit verify: {e}", file=sys.stderr)
        return 2
    if m.get("note"):
        print(f"note: {m['note']}")
    if a.settings:
        try:
            problems += settings_problems(a, m)
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            print(f"audit verify: cannot compare the artefacts' settings with the config: {e}", file=sys.stderr)
            return 2
    for p in problems:
        print(f"{p['problem']}{' (warning)' if p.get('warning') else ''}: {p['path']}: {p['detail']}")
    fails = audit.failures(problems)
    print(f"{len(m['artefacts'])} artefacts, {len(fails)} problems")
    if fails:
        return EXIT_PROBLEMS
    report = Path(a.run_dir) / "audit" / "audit.json"
    claims = json.loads(report.read_text())["claims"] if report.is_file() else None
    if claims is not None:
        print(f"claims: {claims['counts']['PASS']} held, {claims['counts']['FAIL']} failed, "
              f"{claims['counts']['n/a']} not applicable")
        for f in claims["findings"]:
            if f["status"] == "FAIL":
                print(f"  FAIL {f['finding']} ({f.get('where', '')}): {f['claim']}")
        if not claims["held"]:
            return EXIT_CLAIMS
    return 0


def settings_problems(a, m: dict) -> list[dict]:
    """The artefacts made with other settings than the config now gives their jobs (audit.stale_settings), the
    config being the files the run was made with (recorded by the audit), as they are now, or those given."""
    inv = m.get("invocation") or {}
    files = a.configfile if a.configfile else inv.get("configfiles", [])
    overrides = dict(inv.get("config", {})) if not a.configfile else {}
    for kv in a.config or []:
        k, _, v = kv.partition("=")
        overrides[k] = yaml.safe_load(v)
    repo = Path(__file__).resolve().parents[2]
    print(f"comparing every artefact's settings with what {', '.join(map(str, files)) or 'config/config.yaml'}"
          f"{' with ' + json.dumps(overrides) if overrides else ''} gives its job now ...", flush=True)
    return audit.stale_settings(m, a.run_dir, audit.snakemake_dry_run(repo, files, overrides))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the rule's work: manifest, determinism, paper side by side, summary")
    b.add_argument("--run-dir", required=True)
    b.add_argument("--config", type=json.loads, required=True, help="the run's config (JSON)")
    b.add_argument("--config-sha", required=True)
    b.add_argument("--invocation", type=json.loads, default={}, help="Snakemake's config files and --config (JSON)")
    b.add_argument("--jobs", type=int, default=1, help="re-executions run at a time (the rule's threads)")
    b.add_argument("--rule-scripts", type=json.loads, required=True, help="rule name -> its entry point's name")
    b.add_argument("--findings", required=True)
    b.add_argument("--manifest", required=True)
    b.add_argument("--json", required=True)
    b.add_argument("--md", required=True)
    b.add_argument("--html", required=True, help="the summary as a page of the HTML report")
    b.add_argument("targets", nargs="+")
    v = sub.add_parser("verify", help="re-hash a results folder against its manifest")
    v.add_argument("run_dir")
    v.add_argument("--configfile", nargs="+", help="the config to compare the settings with (default: the files the "
                   "run was made with, as recorded by its audit, as they are now)")
    v.add_argument("--config", nargs="+", metavar="KEY=VALUE", help="values over the config, as Snakemake's --config")
    v.add_argument("--no-settings", dest="settings", action="store_false",
                   help="only re-hash: do not plan the config's jobs (which needs Snakemake) to find stale settings")
    a = ap.parse_args()
    sys.exit(build(a) if a.cmd == "build" else verify(a))


if __name__ == "__main__":
    main()
