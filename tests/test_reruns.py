"""Partial reruns you can trust (on the shared smoke run): each config setting reruns exactly the jobs whose output
it changes, nothing that it does not (key order, resources, a path to identical bytes); the audit names artefacts
made with other settings than the config now gives; records are verified where they are read; a damaged token
file or a wrong local file stops the run before any job; the Snakefile refuses another working directory."""
import copy
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import SMOKE_RUN, smoke_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = smoke_config()
pytestmark = pytest.mark.slow


def planned(cfg: dict, tmp: Path, name: str, target: str = "all") -> dict[str, list[str]]:
    """The jobs `snakemake -n` plans for ``cfg`` on the shared smoke run: rule -> sorted wildcards of each job."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    p = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "--configfile", str(path), "--config",
                        f"run={SMOKE_RUN}"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, f"{name}: {p.stdout[-2000:]}{p.stderr[-2000:]}"
    jobs, rule = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            jobs.setdefault(rule, []).append("")
        elif rule and line.strip().startswith("wildcards: "):
            jobs[rule][-1] = line.strip()[len("wildcards: "):]
    return {r: sorted(w) for r, w in jobs.items()}


def changed(**paths) -> dict:
    """smoke.yaml with each ``a__b__0__c=value`` set (``__`` separates keys; list indexes are numbers)."""
    cfg = copy.deepcopy(SMOKE)
    for dotted, value in paths.items():
        keys = [int(k) if k.isdigit() else k for k in dotted.split("__")]
        d = cfg
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return cfg


def sorted_keys(obj):
    return {k: sorted_keys(obj[k]) for k in sorted(obj)} if isinstance(obj, dict) else \
        [sorted_keys(v) for v in obj] if isinstance(obj, list) else obj


PPL = "dataset={d}, size=tiny, model={m}"
ALL_PPL = [PPL.format(d=d, m=m) for d in ("pg19", "proofpile") for m in
           ("CT-64/step6", "FT-64/step6", "PI-64/step6", "base")] + [PPL.format(d="pg19", m=f"PI-64/step{s}")
                                                                    for s in (0, 3)]
TAIL = {"findings": [""], "audit": [""], "all": [""]}  # what every change of a result reruns after it
WINDOW_TABLES = {"table": ["table=table1", "table=table2", "table=table3"], "figure_ppl_vs_window": [""]}


def expected() -> dict[str, tuple[dict, dict]]:
    """setting -> (the config, the jobs it must plan: rule -> sorted wildcards)."""
    pg19 = SMOKE["datasets"]["pg19"]
    return {
        "the same config": (SMOKE, {}),
        "its keys sorted": (sorted_keys(SMOKE), {}),
        "a size's resources": (changed(sizes__tiny__resources={"data_cpus": 2, "train_cpus_per_node": 2}), {}),
        "a corpus path to identical bytes": ("copy", {}),
        "perplexity.stride": (changed(perplexity__stride=4),
                              {"perplexity": sorted(ALL_PPL), **WINDOW_TABLES, **TAIL}),
        "perplexity.bootstrap": (changed(perplexity__bootstrap=50),
                                 {"perplexity": sorted(ALL_PPL), **WINDOW_TABLES, **TAIL}),
        "perplexity.windows": (changed(perplexity__windows=[16, 32, 48, 64]),  # not PI's step 0 and 3: at L' only
                               {"perplexity": sorted(p for p in ALL_PPL if "step0" not in p and "step3" not in p),
                                **WINDOW_TABLES, **TAIL}),
        "a table's extrapolation window": (changed(tables__table1__extrapolate_to={"tiny": 32}),
                                           {"perplexity": [PPL.format(d="pg19", m="base")], "table": ["table=table1"],
                                            "figure_ppl_vs_window": [""], **TAIL}),
        "a dataset's evaluation documents": (changed(datasets__proofpile__eval={"style": "proofpile", "num_docs": 2,
                                                                                 "doc_tokens": 64}),
                                             {"eval_docs": ["dataset=proofpile, tok=tiny"],
                                              "perplexity": sorted(p for p in ALL_PPL if "proofpile" in p),
                                              "table": ["table=table2"], "figure_ppl_vs_window": [""], **TAIL}),
        "an extension's steps": (changed(extensions__0={"size": "tiny", "method": "FT", "ctx": 64, "steps": 8,
                                                         "checkpoints": [8]}), "ft-steps"),
        "an extension's checkpoints": (changed(extensions__1__checkpoints=[0, 2, 6]), "pi-checkpoints"),
        "the fine-tuning lr": (changed(sizes__tiny__lr=2e-3), "lr"),
        "passkey trials": (changed(passkey__trials=3),
                           {"passkey": ["size=tiny, model=FT-64/step6", "size=tiny, model=PI-64/step6",
                                        "size=tiny, model=base"], "table": ["table=table4"],
                            "figure_passkey": [""], **TAIL}),
        "a benchmark task's items": (changed(benchmarks__tasks__cloze_pg19__build=dict(
            SMOKE["benchmarks"]["tasks"]["cloze_pg19"]["build"], items=10)),
            {"benchmark_task": ["size=tiny, task=cloze_pg19"],
             "benchmark": ["size=tiny, model=PI-64/step6", "size=tiny, model=base"], "table": ["table=table5"],
             **TAIL}),
        "a table's rows": (changed(tables__table5__rows=SMOKE["tables"]["table5"]["rows"]
                                   + [{"size": "tiny", "method": "FT", "ctx": 64}]),
                           {"benchmark": ["size=tiny, model=FT-64/step6"], "table": ["table=table5"], **TAIL}),
        "summarization summary length": (changed(summarization__summary_tokens=5), {
            "summarize_finetune": ["dataset=manpages, size=tiny, model=PI-64/step6",
                                   "dataset=manpages, size=tiny, model=base"],
            "summarize": ["dataset=manpages, size=tiny, model=PI-64/step6", "dataset=manpages, size=tiny, model=base"],
            "rouge": ["dataset=manpages, size=tiny, model=PI-64/step6", "dataset=manpages, size=tiny, model=base"],
            "table": ["table=table6"], **TAIL}),
        "the LEAD baseline's section": (changed(summarization__lead={"section": "NAME"}),
                                        {"rouge_lead": ["dataset=manpages"], "table": ["table=table6"], **TAIL}),
        "the theory figure's points": (changed(theory={"points": 50}), {"figure2": [""], **TAIL}),
        "the audit's re-executions": (changed(audit__determinism={"jobs": {"table": 1}, "tolerance": {}}),
                                      {"audit": [""], "all": [""]}),
        "a corpus's content": ("content", "content"),
        "pg19 unchanged": (changed(datasets__pg19=dict(pg19)), {}),
    }


def test_each_setting_reruns_exactly_its_jobs(smoke_run, tmp_path):
    cases = expected()
    # a corpus path to byte-identical content; a corpus whose content differs (one document fewer)
    copy_ = tmp_path / "austen-copy.jsonl.gz"
    shutil.copyfile(ROOT / SMOKE["datasets"]["pg19"]["path"], copy_)
    cases["a corpus path to identical bytes"] = (changed(datasets__pg19__path=str(copy_)), {})
    other = tmp_path / "austen-less.jsonl.gz"
    lines = gzip.open(ROOT / SMOKE["datasets"]["pg19"]["path"], "rt").read().splitlines()
    with gzip.open(other, "wt") as f:
        f.write("\n".join(lines[1:]) + "\n")
    cases["a corpus's content"] = (changed(datasets__pg19__path=str(other),
                                           datasets__pg19__sha256=hashlib.sha256(other.read_bytes()).hexdigest()),
                                   "content")
    with ThreadPoolExecutor(2) as pool:
        got = dict(zip(cases, pool.map(lambda kv: planned(kv[1][0], tmp_path, f"c{kv[0][:20]}".replace(" ", "-")),
                                       cases.items())))
    ext_jobs = derived_expectations()
    failures = []
    for name, (_cfg, want) in cases.items():
        want = ext_jobs[want] if isinstance(want, str) else want
        if got[name] != want:
            failures.append(f"{name}:\n  planned {json.dumps(got[name])}\n  wanted  {json.dumps(want)}")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 15


def derived_expectations() -> dict[str, dict]:
    """The expectations of settings that rerun a fine-tune (the fine-tune and every job downstream of it) or the
    tokenizer (a corpus's content: all but what never reads that corpus)."""
    summarized = lambda *models: {r: [f"dataset=manpages, size=tiny, model={m}" for m in models]  # noqa: E731
                                  for r in ("summarize_finetune", "summarize", "rouge")}
    ext = lambda *names: {"finetune": [f"size=tiny, ext={n}-64" for n in names]}  # noqa: E731
    ft8 = "size=tiny, model=FT-64/step8"
    ft = {**ext("FT"), "perplexity": [f"dataset=pg19, {ft8}", f"dataset=proofpile, {ft8}"], "passkey": [ft8],
          "table": ["table=table1", "table=table2", "table=table4"], "figure_ppl_vs_window": [""],
          "figure_passkey": [""], **TAIL}
    pi6 = "size=tiny, model=PI-64/step6"
    every_table = {"table": [f"table=table{i}" for i in range(1, 8)], "figure_ppl_vs_window": [""],
                   "figure_passkey": [""], "figure_ruler": [""], **TAIL}  # table7: RULER of base and PI-64/step6
    pi = {**ext("PI"), "perplexity": [PPL.format(d="pg19", m="PI-64/step2"), PPL.format(d="pg19", m="PI-64/step6"),
                                      PPL.format(d="proofpile", m="PI-64/step6")],
          "passkey": [pi6], "benchmark": [pi6], "ruler": [pi6], **summarized("PI-64/step6"), **every_table}
    lr = {**ext("CT", "FT", "PI"),
          "perplexity": [p for p in ALL_PPL if "base" not in p and "step0" not in p],
          "passkey": ["size=tiny, model=FT-64/step6", pi6], "benchmark": [pi6], "ruler": [pi6],
          **summarized("PI-64/step6", "base"), **every_table}  # the base model's summarizer: the size's lr too
    content = {"fetch_dataset": ["dataset=pg19"], "train_tokenizer": ["size=tiny"],
               "tokenize": ["dataset=pg19, tok=tiny", "dataset=proofpile, tok=tiny"],
               "eval_docs": ["dataset=pg19, tok=tiny", "dataset=proofpile, tok=tiny"],
               "benchmark_task": ["size=tiny, task=cloze_pg19"], "base_model": ["size=tiny"],
               "init_extension": ["size=tiny, ext=CT-64", "size=tiny, ext=FT-64", "size=tiny, ext=PI-64"],
               **ext("CT", "FT", "PI"), "perplexity": ALL_PPL,
               "passkey": ["size=tiny, model=FT-64/step6", pi6, "size=tiny, model=base"],
               "benchmark": [pi6, "size=tiny, model=base"], "ruler": [pi6, "size=tiny, model=base"],
               **summarized("PI-64/step6", "base"), **every_table}
    return {name: {k: sorted(v) for k, v in d.items()}
            for name, d in (("ft-steps", ft), ("pi-checkpoints", pi), ("lr", lr), ("content", content))}


def test_benchmark_jobs_are_the_same_whatever_order_the_config_lists_its_tasks_in(tmp_path):
    """YAML mappings have no order: two task lists in two orders give the same benchmark jobs (before: "params have
    changed", every benchmark job again); only Table 5's layout follows the order the config writes."""
    from pi_repro import audit

    tasks = SMOKE["benchmarks"]["tasks"]
    second = {"label": "Cloze-B", "build": dict(tasks["cloze_pg19"]["build"], items=8)}
    commands = []
    for order in (("cloze_pg19", "cloze_b"), ("cloze_b", "cloze_pg19")):
        cfg = copy.deepcopy(SMOKE)
        both = {"cloze_pg19": tasks["cloze_pg19"], "cloze_b": second}
        cfg["benchmarks"]["tasks"] = {name: both[name] for name in order}
        path = tmp_path / f"{order[0]}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        p = subprocess.run([sys.executable, "-m", "snakemake", "table5", "-n", "-p", "--forceall", "--configfile",
                            str(path), "--config", "run=task-order"], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        commands.append({(j["rule"], tuple(j["outputs"])): j["argv"] for j in audit.planned_jobs(p.stdout)})
    a, b = commands
    assert a.keys() == b.keys()
    differ = {k[0] for k in a if a[k] != b[k]}
    assert differ == {"table"}, differ  # Table 5 alone, through its layout
    table = next(k for k in a if k[0] == "table")
    assert audit.argv_changes(a[table], b[table]) == [
        '--layout: task_order ["cloze_pg19", "cloze_b"] -> ["cloze_b", "cloze_pg19"]']


def copy_of(smoke_run: Path, name: str) -> Path:
    """A copy of the shared smoke run under another run name (modification times kept: nothing is out of date)."""
    out = smoke_run.parent / f"{smoke_run.name}-{name}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(smoke_run, out, symlinks=True)
    return out


def snakemake_on(run: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--configfile", "config/smoke.yaml", "--config",
                           f"run={run.name}", "--cores", "2"], cwd=ROOT, capture_output=True, text=True)


def verify(run: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "workflow/scripts/audit.py", "verify", str(run.relative_to(ROOT)), *args],
                          cwd=ROOT, capture_output=True, text=True)


def test_the_audit_names_artefacts_made_with_other_settings(smoke_run, tmp_path):
    """`audit.py verify` plans the config's jobs and compares each artefact's command line with the one the config
    gives it now: a stride change names every perplexity record (made with stride 8, the config says 4) and what was
    made from them, nothing else; the unchanged config names none."""
    same = verify(smoke_run)
    assert "stale" not in same.stdout and same.returncode in (0, 3), same.stdout[-2000:] + same.stderr[-2000:]
    (tmp_path / "stride.yaml").write_text(yaml.safe_dump({"perplexity": dict(SMOKE["perplexity"], stride=4)}))
    p = verify(smoke_run, "--configfile", "config/smoke.yaml", str(tmp_path / "stride.yaml"), "--config",
               f"run={SMOKE_RUN}")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    stale = dict(re.findall(r"^stale: (\S+): (.*)$", p.stdout, re.M))
    records = {f"eval/ppl/{w.split(', ')[0][8:]}/tiny/{w.split('model=')[1]}/ppl.json" for w in ALL_PPL}
    assert {k for k, v in stale.items() if "--stride 8 -> 4" in v} == records
    made_from = {k for k, v in stale.items() if "which is stale" in v}
    assert made_from == {f"tables/table{i}.{e}" for i in (1, 2, 3) for e in ("md", "csv", "tex", "html")} | {
        "figures/ppl_vs_window.png", "findings.md", "findings.json"}, made_from


def test_a_changed_record_is_refused_where_it_is_read_and_a_failed_audit_keeps_the_last_good(smoke_run):
    run = copy_of(smoke_run, "tampered")
    record = run / "eval/ppl/pg19/tiny/base/ppl.json"
    stamp = record.stat()
    rec = json.loads(record.read_text())
    rec["windows"]["32"]["perplexity"] *= 1.5
    record.write_text(json.dumps(rec))
    # the edit with its modification time put back: nothing reruns, but the audit (forced) finds it, fails, and
    # keeps the manifest of the last audit that passed, which verify then uses
    os.utime(record, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    p = snakemake_on(run, "audit", "--forcerun", "audit")
    assert p.returncode != 0 and not (run / "audit/provenance.json").exists(), p.stdout[-2000:]
    assert (run / "audit/last-good/provenance.json").is_file() and (run / "audit/failed/provenance.json").is_file()
    v = verify(run, "--no-settings")
    assert v.returncode == 1 and "verifying against the last audit that passed" in v.stdout
    assert "changed: eval/ppl/pg19/tiny/base/ppl.json" in v.stdout, v.stdout[-2000:]
    # read by Table 1 (the record newer than the table: Snakemake reruns it): refused before anything is written
    record.touch()
    p = snakemake_on(run, "table1")
    assert p.returncode != 0
    log = (run / "logs/tables/table1.log").read_text()
    assert f"{record.relative_to(ROOT)}: its bytes differ from those perplexity.py recorded" in log, log[-2000:]
    shutil.rmtree(run)


def test_a_replaced_table_is_refused_by_the_findings(smoke_run):
    run = copy_of(smoke_run, "replaced")
    shutil.copyfile(run / "tables/table1.csv", run / "tables/table2.csv")  # newer than its inputs: not rebuilt
    p = snakemake_on(run, "findings")
    assert p.returncode != 0
    log = (run / "logs/findings/findings.log").read_text()
    assert f"{run.relative_to(ROOT)}/tables/table2.csv: its bytes differ from those make_table.py recorded" in log
    shutil.rmtree(run)


def test_a_truncated_token_file_stops_the_run_before_any_job(smoke_run):
    """Before: `mmap length is greater than file size` naming no file, after Snakemake had deleted the base model
    it was about to rebuild from the file."""
    run = copy_of(smoke_run, "truncated")
    tokens = run / "data/pg19/tiny/train.npy"
    with open(tokens, "r+b") as f:
        f.truncate(tokens.stat().st_size // 2)
    base = run / "models/tiny/base/model.safetensors"
    stamp = base.stat().st_mtime_ns
    p = snakemake_on(run)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and f"{tokens.relative_to(ROOT)}: " in out and "truncated or damaged" in out, out[-2000:]
    assert "nothing was run, nothing deleted" in out
    assert base.is_file() and base.stat().st_mtime_ns == stamp
    shutil.rmtree(run)


def test_a_finished_fine_tune_rerun_through_snakemake_trains_nothing(smoke_run):
    """The fine-tune's manifest lost after its training finished (as when Snakemake marks an interrupted job
    incomplete): the rerun verifies and exports again, trains no step, and records what the training measured."""
    run = copy_of(smoke_run, "finished")
    ext = run / "models/tiny/PI-64"
    before = json.loads((ext / "finetune.json").read_text())
    log, weights = (ext / "train-log.jsonl").read_text(), (ext / "step6/model.safetensors").read_bytes()
    (ext / "finetune.json").unlink()
    target = str((ext / "finetune.json").relative_to(ROOT))
    p = snakemake_on(run, target)
    assert p.returncode == 0, p.stderr[-2000:]
    after = json.loads((ext / "finetune.json").read_text())
    assert (ext / "train-log.jsonl").read_text() == log and (ext / "step6/model.safetensors").read_bytes() == weights
    assert not (ext / "step7").exists() and after["throughput"]["tokens_trained"] == 6 * 4 * 64
    strip = lambda m: {k: {f: v for f, v in c.items() if f != "path"} for k, c in m["checkpoints"].items()}  # noqa
    assert strip(after) == strip(before) and after["resumed_from"].endswith("checkpoint-6")
    shutil.rmtree(run)


def test_counts_are_checked_against_the_data_they_count_before_any_job(smoke_run, tmp_path):
    """On the finished smoke run: a fine-tune longer than its training tokens, more evaluation or summarization
    documents than a split has: each named (key, numbers, file) while the DAG is built, nothing run."""
    cfg = changed(extensions__0={"size": "tiny", "method": "FT", "ctx": 64, "steps": 100000, "checkpoints": [100000]},
                  summarization__test_docs=500, datasets__pg19__eval={"style": "pg19", "num_docs": 99})
    path = tmp_path / "counts.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(path), "--config",
                        f"run={SMOKE_RUN}"], cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "nothing was run, nothing deleted" in out
    assert re.search(r"extensions\[0\] \(FT-64\): 100000 steps x 4 sequences x 64 tokens need 25600000 training "
                     r"tokens; \S+/data/pg19/tiny/train.npy, \S+/data/proofpile/tiny/train.npy hold \d+", out), out
    assert "summarization.test_docs: 500 asked, the test split of manpages" in out
    assert "datasets.pg19.eval.num_docs: 99 evaluation documents asked, the test split of " in out
