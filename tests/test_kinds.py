"""The registries of table kinds (pi_repro.kinds) and evaluation tasks (pi_repro.tasks): a kind or a task that
forgets a member is refused when it is registered, every GPU rule of the workflow is known to the audit, and a kind
from outside the package (tests/plugins/ratio_kind.py, named by a config's ``plugins``) is validated, planned,
priced, laid out and checked through Snakemake with nothing else changed (docs/adding-a-table.md)."""
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from pi_repro import config as C  # noqa: E402
from pi_repro import cost, kinds, targets, tasks  # noqa: E402

PLUGIN = "tests/plugins/ratio_kind.py"
TOY = {"kind": "ratio", "dataset": "pg19", "title": "Perplexity over perplexity at L",
       "rows": [{"size": "tiny", "method": "None"}, {"size": "tiny", "method": "PI", "ctx": 64}]}


@pytest.fixture(autouse=True)
def registries_restored():
    """What a test registers (a plugin's kind) is gone after it: the registries are process-wide, and the other
    tests' findings must not meet a kind they do not know."""
    kinds_before, tasks_before = dict(kinds.KINDS), dict(tasks.TASKS)
    plugins_before = {m for m in sys.modules if m.startswith("pi_repro_plugin_")}
    yield
    kinds.KINDS.clear()
    kinds.KINDS.update(kinds_before)
    tasks.TASKS.clear()
    tasks.TASKS.update(tasks_before)
    for m in {m for m in sys.modules if m.startswith("pi_repro_plugin_")} - plugins_before:
        del sys.modules[m]


def smoke_with_toy() -> dict:
    return {"extends": "config/smoke.yaml", "plugins": [PLUGIN], "tables": {"toy": copy.deepcopy(TOY)}}


def test_a_kind_that_forgets_a_member_is_refused_at_registration():
    class Partial(kinds.Kind):
        task, fmt, schema, tolerance, findings_read = "ppl", "{:.2f}", {}, None, {}

        def validate(self, cfg, name, spec):
            pass

        def cells(self, cfg, spec):
            return []

        def frame(self, records):
            return None

    with pytest.raises(TypeError, match=r"table kind 'partial' \(Partial\) does not define note, findings, paper_cell"):
        kinds.register("partial")(Partial)
    assert "partial" not in kinds.KINDS

    class Stray(kinds.Windows):
        task = "no-such-task"

    with pytest.raises(TypeError, match="unknown task 'no-such-task'"):
        kinds.register("stray")(Stray)
    with pytest.raises(TypeError, match="registered twice"):
        kinds.register("windows")(kinds.Windows)


def test_a_task_that_forgets_a_member_is_refused_at_registration():
    class NoPeak(tasks.Task):
        rule, gpu_rules, batch_key, dataset, documents = "x", ("x",), "x.batch_size", None, False

        def plan(self, cfg, job, windows, add, x):
            pass

    with pytest.raises(TypeError, match=r"evaluation task 'nopeak' \(NoPeak\) does not define peak"):
        tasks.register("nopeak")(NoPeak)
    assert "nopeak" not in tasks.TASKS


def test_every_rule_that_asks_gpus_is_one_the_audit_knows():
    """The audit runs its re-executions of these rules on a GPU node (common.smk's audit_job): a GPU rule missing
    from pi_repro.tasks would silently be re-executed with gpus=0. Every rule whose resources come from the GPU
    sizing functions must be in tasks.gpu_rules(), and every rule named there must exist."""
    text = "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    blocks = re.split(r"\n(?=rule \w+:)", text)
    on_gpu = set()
    for b in blocks:
        m = re.match(r"rule (\w+):", b)
        if m and re.search(r"resources:\s*\n\s*\*\*\w+_resources", b):  # common.smk's GPU-sizing functions
            on_gpu.add(m.group(1))
    rules = {m.group(1) for b in blocks if (m := re.match(r"rule (\w+):", b))}
    assert on_gpu, "no rule found with GPU resources: the pattern above is out of date"
    assert on_gpu <= set(tasks.gpu_rules()), on_gpu - set(tasks.gpu_rules())
    assert set(tasks.gpu_rules()) <= rules, set(tasks.gpu_rules()) - rules


def test_a_plugin_kind_is_validated_planned_and_priced():
    cfg = C.validate(smoke_with_toy())
    assert "ratio" in kinds.KINDS
    cells = kinds.table_cells(cfg, "toy")
    assert ("ppl", "pg19", "tiny", "base", 64) in cells and ("ppl", "pg19", "tiny", "PI-64/step6", 64) in cells
    rows = [r for r in cost.plan(cfg) if "toy" in r["tables"]]  # its task prices its jobs, and the fine-tune it reads
    assert sorted((r["rule"], r["what"]) for r in rows) == [
        ("finetune", "tiny PI-64"), ("perplexity", "tiny PI-64/step6 on pg19 at 16, 32, 64"),
        ("perplexity", "tiny base on pg19 at 16, 32, 64")]

    bad = smoke_with_toy()
    del bad["tables"]["toy"]["rows"]
    with pytest.raises(targets.ConfigError, match=r"tables\.toy.*'rows' is a required property"):
        C.validate(bad)  # the kind's own schema
    bad = smoke_with_toy()
    bad["tables"]["toy"]["rows"][1]["ctx"] = 48
    with pytest.raises(targets.ConfigError, match=r"tables\.toy\.rows\[1\]: no extension"):
        C.validate(bad)  # the kind's own checks
    bad = smoke_with_toy()
    bad["tables"]["toy"]["kind"] = "ratios"
    with pytest.raises(targets.ConfigError, match=r"tables\.toy\.kind.*'ratios' is not one of .*'ratio'"):
        C.validate(bad)
    bad = smoke_with_toy()
    bad["plugins"] = ["tests/plugins/no_such_kind.py"]
    with pytest.raises(targets.ConfigError, match=r"plugins\[0\]: tests/plugins/no_such_kind\.py: no such file"):
        C.validate(bad)


@pytest.mark.slow
def test_a_plugin_kinds_table_is_built_through_snakemake(smoke_run, tmp_path):
    """`snakemake toy` on a copy of the smoke run: the table job alone runs (its perplexity records exist), and
    its cells are each model's perplexity over its perplexity at L, read from those records by hand; the findings
    then carry the kind's finding."""
    run = smoke_run.parent / f"{smoke_run.name}-plugin"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(smoke_run, run, symlinks=True)
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump(smoke_with_toy()))
    cmd = [sys.executable, "-m", "snakemake", "--configfile", str(cfg), "--config", f"run={run.name}", "--cores", "2"]
    dry = subprocess.run(cmd + ["toy", "-n"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    planned = re.findall(r"^(?:local)?rule (\w+):$", dry.stdout, flags=re.M)
    assert planned == ["table", "toy"], planned
    p = subprocess.run(cmd + ["toy", f"results/{run.name}/findings.md"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    L = 32
    got = {(r["method"], int(r["model_ctx"])): r for r in
           __import__("pandas").read_csv(run / "tables/toy.csv", keep_default_na=False).to_dict("records")}
    for model, key in (("base", ("None", 32)), ("PI-64/step6", ("PI", 64))):
        rec = json.loads((run / f"eval/ppl/pg19/tiny/{model}/ppl.json").read_text())
        ppl = {int(w): x["perplexity"] for w, x in rec["windows"].items()}
        assert {int(c): v for c, v in got[key].items() if c.isdigit()} == pytest.approx(
            {w: ppl[w] / ppl[L] for w in ppl}, rel=1e-12)
    assert "# Perplexity over perplexity at L" in (run / "tables/toy.md").read_text()
    findings = json.loads((run / "findings.json").read_text())
    assert [r["where"] for r in findings if r["finding"] == "R"] == ["Perplexity over perplexity at L tiny PI-64"]
    shutil.rmtree(run, ignore_errors=True)


def test_the_package_imports_in_one_direction():
    """No import circle in pi_repro, counting imports inside functions too: each module's ``from . import`` and
    ``from .x import`` (the configuration modules: targets < kinds, tasks < sizing < cost < config)."""
    import ast

    pkg = ROOT / "workflow/pi_repro"
    graph = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.ImportFrom) and n.level == 1:
                deps |= {n.module.split(".")[0]} if n.module else {a.name for a in n.names}
        graph[f.stem] = {d for d in deps if (pkg / f"{d}.py").is_file() and d != f.stem}

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, (*seen, d))) for d in graph[start])

    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, {m: sorted(graph[m]) for m in circles}
    assert graph["targets"] <= {"io"} and graph["tasks"] == graph["methods"] == {"registry"}
    assert graph["registry"] == set()
