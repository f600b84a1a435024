import json
import re

import numpy as np
import pandas as pd
import pytest

from pi_repro import findings, kinds, tables


def write_record(root, dataset, size, model, window_ppl, model_window):
    """A perplexity record as rule perplexity writes it (coordinates included) at its path."""
    if model == "base":
        coords = {"method": "None", "ctx": model_window, "tag": None, "step": 0}
    else:
        name, step = model.split("/")
        coords = {"method": name.split("-")[0], "ctx": int(name.split("-")[1]), "tag": None, "step": int(step[4:])}
    p = root / "eval" / "ppl" / dataset / size / model / "ppl.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"task": "ppl", "dataset": dataset, "size": size, **coords, "model_window": model_window,
                             "stride": 8, "windows": {
        str(w): {"perplexity": v, "ci95": [v * 0.9, v * 1.1], "n_scored_tokens": 100, "n_docs": 2}
        for w, v in window_ppl.items()}}))
    return str(p)


def cells(paths, only_model_window=False):
    return tables.cells_frame(tables.load_records(paths), only_model_window)


def make_tables(tmp_path, pi_lp=4.0, ft_lp=5.0, none_2l=80.0):
    L = 32
    recs = [
        write_record(tmp_path, "pg19", "s", "base", {32: 5.0, 64: none_2l, 16: 6.0}, L),  # columns sort numerically
        write_record(tmp_path, "pg19", "s", "PI-64/step10", {16: 6.0, 32: 4.5, 64: pi_lp}, 64),
        write_record(tmp_path, "pg19", "s", "FT-64/step10", {16: 6.0, 32: 4.8, 64: ft_lp}, 64),
        write_record(tmp_path, "pg19", "s", "CT-64/step10", {16: 6.0, 32: 4.9, 64: 50.0}, 64),
    ]
    t1 = tables.windows_table(cells(recs))
    steps = [write_record(tmp_path, "pg19", "s", f"PI-64/step{n}", {64: v}, 64) for n, v in ((0, 7.0), (10, pi_lp))]
    t3 = tables.steps_table(cells(steps, only_model_window=True))
    return t1, t3, L


def run_findings(t1, t2, t3, L, hub=()):
    """The findings on a Table 1/2/3 set as the default config has them (two windows tables, one steps table)."""
    tabs = {"table1": {"kind": "windows", "dataset": "pg19", "frame": t1},
            "table2": {"kind": "windows", "dataset": "proofpile", "frame": t2},
            "table3": {"kind": "steps", "dataset": "pg19", "frame": t3}}
    return kinds.check_findings({k: v for k, v in tabs.items() if v["frame"] is not None}, L, hub)


def test_tables_have_the_papers_layout(tmp_path):
    t1, t3, _ = make_tables(tmp_path)
    assert list(t1["method"]) == ["None", "FT", "PI", "CT"]  # None first, then by window, FT before PI
    assert list(t1.columns) == ["size", "model_ctx", "method", "16", "32", "64"]
    assert list(t3.columns) == ["size", "model_ctx", "method", "0", "10"] and t3.iloc[0]["0"] == 7.0
    tables.write_table(t1, "T", "note", md=tmp_path / "t.md", csv=tmp_path / "t.csv", tex=tmp_path / "t.tex")
    assert "CT (control)" in (tmp_path / "t.md").read_text() and "\\begin{tabular}" in (tmp_path / "t.tex").read_text()
    back = tables.read_table(tmp_path / "t.csv")
    assert list(back["method"]) == ["None", "FT", "PI", "CT"]  # "None" survives the CSV round trip


def status(results, fid):
    return [r["status"] for r in results if r["finding"] == fid]


def test_findings_pass_when_the_paper_holds(tmp_path):
    t1, t3, L = make_tables(tmp_path)
    res = run_findings(t1, t1, t3, L)
    assert status(res, "1") == ["PASS", "PASS"] and status(res, "1m") == ["PASS", "PASS"]
    assert status(res, "2") == ["PASS"]
    assert set(status(res, "3a") + status(res, "3b") + status(res, "3c")) == {"PASS"}
    assert status(res, "0") == ["PASS", "PASS"]  # CT@L 4.9 vs None@L 5.0: 2% change
    assert "PASS" in findings.to_markdown(res)


def test_findings_fail_visibly_when_it_does_not(tmp_path):
    t1, t3, L = make_tables(tmp_path, pi_lp=5.5, ft_lp=5.0, none_2l=6.0)
    res = run_findings(t1, t1, t3, L)
    assert status(res, "1") == ["FAIL", "FAIL"] and status(res, "1m") == ["FAIL", "FAIL"]  # 6.0/5.0: no blow-up
    assert status(res, "3a") == ["FAIL", "FAIL"] and status(res, "3b") == ["FAIL", "FAIL"]
    md = findings.to_markdown(res)
    assert "FAIL" in md and "5.500" in md  # the numbers used are printed


def test_csv_keeps_every_float_of_the_records_exactly(tmp_path):
    rng = np.random.default_rng(0)
    ppl = {m: {w: float(v) for w, v in zip((16, 32, 64), rng.uniform(1, 100, 3))} for m in ("PI-64/step10", "base")}
    recs = [write_record(tmp_path, "pg19", "s", m, v, 64 if m != "base" else 32) for m, v in ppl.items()]
    t = tables.windows_table(cells(recs))
    tables.write_table(t, "T", "", md=tmp_path / "t.md", csv=tmp_path / "t.csv", tex=tmp_path / "t.tex")
    back = tables.read_table(tmp_path / "t.csv")
    for w, v in ppl["PI-64/step10"].items():
        assert tables.value(back, "s", "PI", w) == v  # exact: the CSV has every digit
        for printed in (tmp_path / "t.md").read_text(), (tmp_path / "t.tex").read_text():
            assert f"{v:.2f}" in printed and repr(v) not in printed  # two decimals
    assert tables.value(back, "s", "None", 64) == ppl["base"][64]


def test_a_cell_given_twice_is_an_error_not_an_average(tmp_path):
    recs = [write_record(tmp_path, "pg19", "s", f"PI-64/step{n}", {32: v, 64: v}, 64)
            for n, v in ((10, 4.0), (20, 6.0))]
    with pytest.raises(ValueError, match=re.escape("{'size': 's', 'ctx': 64, 'method': 'PI', 'window': 32}")):
        tables.windows_table(cells(recs))
    other = write_record(tmp_path, "proofpile", "s", "PI-64/step10", {64: 3.0}, 64)
    with pytest.raises(ValueError, match=re.escape("{'size': 's', 'ctx': 64, 'method': 'PI', 'step': 10}")):
        tables.steps_table(cells([recs[0], other], only_model_window=True))


# Findings on hand-made tables in the shape the findings read (tables.read_table of a written table); L = 32.
# The baseline holds every finding; each case changes some cells ({(method, model ctx): {column: perplexity or
# None (no cell)}}) and names every finding whose status is then no longer PASS.
BASE_T1 = {("None", 32): {16: 6.0, 32: 5.0, 48: 20.0, 64: 80.0}, ("FT", 64): {16: 6.0, 32: 4.8, 48: 4.7, 64: 5.0},
           ("PI", 64): {16: 6.0, 32: 4.5, 48: 4.2, 64: 4.0}, ("CT", 64): {16: 6.0, 32: 4.9, 48: 30.0, 64: 50.0}}
BASE_T3 = {("PI", 64): {0: 5.5, 10: 4.0}}


def frame(cells, change):
    """A table with one row per (method, model ctx) of ``cells`` updated by ``change``; NaN where no cell."""
    rows = {k: dict(v) for k, v in cells.items()}
    for k, v in change.items():
        rows.setdefault(k, {}).update(v)
    cols = sorted({c for v in rows.values() for c in v})
    return pd.DataFrame([{"size": "s", "model_ctx": ctx, "method": m,
                          **{str(c): np.nan if v.get(c) is None else v[c] for c in cols}}
                         for (m, ctx), v in rows.items()])


@pytest.mark.parametrize("t1,t3,changed", [
    pytest.param({}, {}, {}, id="paper-holds"),
    pytest.param({("None", 32): {16: None}}, {}, {}, id="1-no-L/2"),  # the inside-L comparison is skipped
    pytest.param({("None", 32): {48: 90.0}}, {}, {"1": "FAIL"}, id="1-not-rising"),  # 5 -> 90 -> 80 past L
    pytest.param({("None", 32): {48: 5.5, 64: 6.0}}, {}, {"1": "FAIL", "1m": "FAIL"},
                 id="1-small-rise"),  # rises at every window, but 1.2x < 1.5x at 2L
    pytest.param({("None", 32): {16: 2.0, 48: 7.0, 64: 10.0}}, {}, {"1": "FAIL", "1m": "FAIL"},
                 id="1-not-faster"),  # 2x from L to 2L, less than 2.5x from L/2 to L
    pytest.param({("None", 32): {64: None}}, {}, {"1": "n/a", "1m": "n/a", "2": "n/a"}, id="1-no-2L"),
    pytest.param({("CT", 64): {32: 5.5}}, {}, {"0": "FAIL"}, id="0-worse"),  # CT@L 10% above None@L (> 5%)
    pytest.param({("CT", 64): {32: 4.5}}, {}, {"0": "FAIL"}, id="0-better"),  # ... or 10% below
    pytest.param({("CT", 64): {32: None}}, {}, {"0": "n/a", "3c": "n/a"}, id="0-no-CT"),
    pytest.param({("PI", 64): {32: 5.1, 64: 4.95}}, {}, {"3c": "FAIL"}, id="3c"),  # below PI@L, FT@L', not CT@L
    pytest.param({("None", 32): {48: 8.0, 64: 12.0}}, {("PI", 64): {0: 13.0}}, {"1m": "FAIL", "2": "FAIL"},
                 id="2-worse-than-extrapolation"),  # PI untuned 13 > None@2L 12, though within 3x None@L
    pytest.param({}, {("PI", 64): {0: 20.0}}, {"2": "FAIL"}, id="2-far-from-L"),  # below None@2L, 4x None@L
])
def test_each_branch_of_the_findings_on_a_constructed_table(t1, t3, changed):
    table1 = frame(BASE_T1, t1)
    res = run_findings(table1, table1.iloc[:0], frame(BASE_T3, t3), 32)  # an empty Table 2: each finding once
    expected = {f: "PASS" for f in ("1", "1m", "0", "3a", "3b", "3c", "2")} | changed | {
        f: "n/a" for f in ("4a", "4b", "4c", "5", "6", "7", "9")}
    assert {r["finding"]: r["status"] for r in res} == expected


def test_findings_without_a_table_of_their_kind_are_not_applicable_with_the_reason():
    t1 = frame(BASE_T1, {})
    res = kinds.check_findings({"table1": {"kind": "windows", "dataset": "pg19", "frame": t1}}, 32)
    two = [r for r in res if r["finding"] == "2"]
    assert [r["status"] for r in two] == ["n/a"] and "no table of kind steps" in two[0]["reason"]
    res = kinds.check_findings({"table3": {"kind": "steps", "dataset": "pg19", "frame": frame(BASE_T3, {})}}, 32)
    assert {r["finding"]: r["status"] for r in res} == {"0": "n/a", "1": "n/a", "1m": "n/a", "3": "n/a", "2": "n/a",
                                                        "4a": "n/a", "4b": "n/a", "4c": "n/a", "5": "n/a",
                                                        "6": "n/a", "7": "n/a", "9": "n/a"}
    assert "no windows table on this dataset" in findings.to_markdown(res)


def test_finding_2_reads_each_steps_rows_own_window_as_in_the_papers_table_3():
    """The paper's Table 3 has rows at 4L and 8L, none at 2L: each row's step 0 is read at its own window
    against extrapolation at that window (L = 2048 here)."""
    L = 2048
    t1 = pd.DataFrame([{"size": "7B", "model_ctx": L, "method": "None", "2048": 7.2, "8192": 2000.0, "16384": 3000.0}])
    t3 = pd.DataFrame([{"size": "7B", "model_ctx": 8192, "method": "PI", "0": 16.1, "1000": 6.95},
                       {"size": "7B", "model_ctx": 16384, "method": "PI", "0": 112.1, "1000": 6.83}])
    res = [r for r in kinds.check_findings({"table1": {"kind": "windows", "dataset": "pg19", "frame": t1},
                                      "table3": {"kind": "steps", "dataset": "pg19", "frame": t3}}, L)
           if r["finding"] == "2"]
    assert [(r["where"].split()[-1], r["status"]) for r in res] == [("L'=8192", "PASS"), ("L'=16384", "FAIL")]
    assert res[0]["numbers"] == {"PI-8192 step0@8192": 16.1, "None@8192": 2000.0, "None@2048": 7.2}


def test_magnitude_is_the_papers_absolute_statement_for_a_hub_llama_and_relative_otherwise():
    t1 = pd.DataFrame([{"size": "7B", "model_ctx": 2048, "method": "None", "1024": 7.5, "2048": 7.2, "4096": 500.0}])
    tabs = {"table1": {"kind": "windows", "dataset": "pg19", "frame": t1}}
    hub = next(r for r in kinds.check_findings(tabs, 2048, hub_sizes=["7B"]) if r["finding"] == "1m")
    here = next(r for r in kinds.check_findings(tabs, 2048) if r["finding"] == "1m")
    assert hub["status"] == "FAIL" and "10^3" in hub["claim"] and "absolute" not in hub["claim"]  # 500 < 1000
    assert here["status"] == "PASS" and "relative" in here["claim"]  # 500 / 7.2 > 10x


def passkey_record(size, method, ctx, step, windows):
    """A passkey record as rule passkey writes it: {window: (k_top, k_max)}."""
    return {"task": "passkey", "dataset": "synthetic", "size": size, "method": method, "ctx": ctx, "tag": None,
            "step": step, "protocol": {"num_k": 32, "trials": 10, "threshold": 0.2, "intro": True, "seed": 0},
            "windows": {str(w): {"k_top": top, "k_max": km, "per_k": []} for w, (top, km) in windows.items()}}


def papers_table4(pi_32k_600=18432, ft_10000=2560, base_2l=0):
    """The paper's Table 4 as records (k_top = the window: the paper's grid), plus a base-model row at 2L."""
    recs = [passkey_record("7B", "None", 2048, 0, {2048: (2048, 2048), 4096: (4096, base_2l)})]
    ft = {200: 1792, 400: 2048, 600: 2048, 800: 2048, 1000: 2304, 10000: ft_10000}
    recs += [passkey_record("7B", "FT", 8192, s, {8192: (8192, k)}) for s, k in ft.items()]
    for ctx in (8192, 16384, 32768):
        recs += [passkey_record("7B", "PI", ctx, s, {ctx: (ctx, pi_32k_600 if (ctx, s) == (32768, 600) else ctx)})
                 for s in (200, 400, 600, 800, 1000)]
    return recs


def test_passkey_table_has_the_papers_layout(tmp_path):
    from pi_repro.kinds import KINDS

    t = KINDS["passkey"].frame(papers_table4())
    assert list(t.columns) == ["size", "model_ctx", "method", "mixture", "window", "k_top", "0", "200", "400", "600",
                               "800", "1000", "10000"]
    assert list(t["mixture"]) == ["-", "-", "corpus", "corpus", "corpus", "corpus"]  # older records: corpus
    assert [(r.method, r.model_ctx, r.window) for r in t.itertuples()] == [
        ("None", 2048, 2048), ("None", 2048, 4096), ("FT", 8192, 8192), ("PI", 8192, 8192), ("PI", 16384, 16384),
        ("PI", 32768, 32768)]
    assert t.iloc[5]["600"] == 18432 and pd.isna(t.iloc[3]["10000"]) and t.iloc[2]["10000"] == 2560
    tables.write_table(t, "Table 4", "note", md=tmp_path / "t.md", csv=tmp_path / "t.csv", tex=tmp_path / "t.tex",
                       fmt=KINDS["passkey"].fmt)
    md = (tmp_path / "t.md").read_text()
    assert "| 18432 " in md and "18432.00" not in md and "Largest k" in md
    back = tables.read_table(tmp_path / "t.csv")
    assert back.iloc[5]["600"] == 18432 and list(back["method"])[0] == "None"
    with pytest.raises(ValueError, match="passkey records for the cell"):
        KINDS["passkey"].frame(papers_table4() + papers_table4()[:1])


@pytest.mark.parametrize("kw, want", [
    ({}, {"4a": ["PASS"] * 3, "4b": ["PASS"], "4c": ["PASS"]}),  # the paper's own numbers hold
    ({"pi_32k_600": 18432}, {"4a": ["PASS"] * 3}),  # one bad checkpoint before the last: the paper's exception
    ({"ft_10000": 8192}, {"4b": ["FAIL"]}),  # FT reaching its window: not the paper's picture
    ({"ft_10000": 4096}, {"4b": ["FAIL"]}),  # below its window but 2L: beyond "about L"
    ({"base_2l": 3000}, {"4c": ["FAIL"]}),  # extrapolation retrieving past L
])
def test_finding_4_on_the_papers_table_4_and_its_failures(kw, want):
    from pi_repro.kinds import KINDS

    t = KINDS["passkey"].frame(papers_table4(**kw))
    res = kinds.check_findings({"Table 4": {"kind": "passkey", "dataset": None, "frame": t}}, 2048)
    got = {}
    for r in res:
        if r["finding"].startswith("4"):
            got.setdefault(r["finding"], []).append(r["status"])
    assert {k: v for k, v in got.items() if k in want} == want
    pi = next(r for r in res if r["finding"] == "4a" and "32768" in r["where"])
    assert pi["numbers"]["k_max step 600"] == kw.get("pi_32k_600", 18432) and pi["numbers"]["largest k tested"] == 32768


def test_table_4_shows_two_fine_tuning_mixtures_side_by_side_and_finding_4_names_each():
    """The same extension fine-tuned on two data mixtures (tagged variants) is two rows, never one cell given twice;
    finding 4 is checked on each and says which mixture it read."""
    from pi_repro.kinds import KINDS

    recs = [passkey_record("mini", "None", 128, 0, {128: (120, 120), 256: (248, 0)})]
    for mix, km in (("pretraining", 248), ("corpus", 0)):
        recs += [dict(passkey_record("mini", m, 256, s, {256: (248, km if m == "PI" else 240)}), mixture=mix,
                      tag=None if mix == "pretraining" else "corpus") for m in ("FT", "PI") for s in (0, 100)
                 if (m, s) != ("FT", 0)]
    t = KINDS["passkey"].frame(recs)
    assert [(r.method, r.mixture, r.window) for r in t.itertuples()] == [
        ("None", "-", 128), ("None", "-", 256), ("FT", "corpus", 256), ("FT", "pretraining", 256),
        ("PI", "corpus", 256), ("PI", "pretraining", 256)]
    res = [r for r in kinds.check_findings({"Table 4": {"kind": "passkey", "dataset": None, "frame": t}}, 128)
           if r["finding"] in ("4a", "4b")]
    assert [(r["finding"], r["status"], r["where"].split(" fine-tuned on ")[1].split()[0]) for r in res] == [
        ("4b", "FAIL", "corpus"), ("4b", "FAIL", "pretraining"), ("4a", "FAIL", "corpus"),
        ("4a", "PASS", "pretraining")]
    assert res[3]["numbers"]["k_max step 100"] == 248


def test_the_passkey_figure_draws_each_mixture_in_its_own_panel(tmp_path):
    """The rule's plot script (figure_passkey) on one extension fine-tuned on two mixtures: one panel per model,
    mixture and window (two mixtures' lines never share a panel), steps in order in each, and the figure written
    with one panel each."""
    import subprocess
    import sys
    from pathlib import Path

    from matplotlib.image import imread

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "workflow" / "scripts"))
    import plot_passkey

    def with_per_k(rec, acc):
        for w in rec["windows"].values():
            w["per_k"] = [{"k": k, "accuracy": acc, "ci95": [max(0.0, acc - 0.2), min(1.0, acc + 0.2)]}
                          for k in (48, 148, 248)]
        return rec

    recs = [with_per_k(passkey_record("mini", "None", 128, 0, {128: (120, 120)}), 1.0)]
    for mix, tag in (("pretraining", None), ("corpus", "corpus")):
        recs += [with_per_k(dict(passkey_record("mini", "PI", 256, s, {256: (248, 0)}), mixture=mix, tag=tag), s / 200)
                 for s in (100, 0)]
    groups = plot_passkey.panels(recs)
    assert list(groups) == [("mini", "None", 128, "-", 128), ("mini", "PI", 256, "corpus", 256),
                            ("mini", "PI", 256, "pretraining", 256)]
    assert [[step for step, _, _ in lines] for lines in groups.values()] == [[0], [0, 100], [0, 100]]
    paths = []
    for i, rec in enumerate(recs):
        paths.append(tmp_path / f"passkey{i}.json")
        paths[-1].write_text(json.dumps(rec))
    out = tmp_path / "figures" / "passkey.png"
    p = subprocess.run([sys.executable, "workflow/scripts/plot_passkey.py", "--base-window", "128", "--out", str(out),
                        *map(str, paths)], cwd=root, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert imread(out).shape[:2] == (round(3.2 * 110), 3 * 4 * 110)  # one row of three panels


def test_finding_4a_fails_when_pi_does_not_reach_its_window():
    from pi_repro.kinds import KINDS

    recs = [passkey_record("mini", "PI", 256, s, {256: (248, k)}) for s, k in ((0, 0), (100, 120))]
    t = KINDS["passkey"].frame(recs)
    res = kinds.check_findings({"Table 4": {"kind": "passkey", "dataset": None, "frame": t}}, 128)
    assert [(r["finding"], r["status"]) for r in res if r["finding"].startswith("4")] == [
        ("4a", "FAIL"), ("4b", "n/a"), ("4c", "n/a")]
    assert [r["status"] for r in res if r["finding"] == "5"] == ["n/a"]


PAPER_T5 = {  # the paper's Table 5: (size, ctx, data) -> BoolQ, PIQA, Race-M, Race-H, WinoGrande
    ("7B", 2048, "None"): (76.1, 78.9, 55.7, 42.2, 69.6), ("7B", 8192, "pile"): (73.2, 78.2, 53.8, 41.7, 69.0),
    ("7B", 16384, "pile"): (69.8, 77.6, 53.3, 40.9, 67.8), ("7B", 32768, "pile"): (64.7, 77.2, 50.1, 39.6, 66.9),
    ("7B", 8192, "redpajama"): (75.5, 77.4, 54.5, 41.5, 68.1), ("33B", 2048, "None"): (81.6, 80.2, 61.1, 45.9, 76.2),
    ("33B", 8192, "pile"): (80.2, 80.7, 60.2, 45.7, 75.9)}
T5_TASKS = [("boolq", "BoolQ"), ("piqa", "PIQA"), ("race_middle", "Race-M"), ("race_high", "Race-H"),
            ("winogrande", "WinoGrande")]


def bench_records(cells=PAPER_T5):
    recs = []
    for (size, ctx, data), accs in cells.items():
        recs.append({"task": "bench", "dataset": "zeroshot", "size": size, "ctx": ctx, "tag": None, "step": 1000,
                     "method": "None" if data == "None" else "PI", "finetune_data": [] if data == "None" else [data],
                     "window": 2048, "harness_version": "0.4.13", "task_order": [n for n, _ in T5_TASKS],
                     "tasks": {n: {"label": lab, "acc": a / 100, "acc_stderr": 0.008}
                               for (n, lab), a in zip(T5_TASKS, accs)}})
    return recs


def test_benchmarks_table_has_the_papers_layout(tmp_path):
    from pi_repro.kinds import KINDS

    kind = KINDS["benchmarks"]
    t = kind.frame(bench_records())
    assert [(r.size, r.model_ctx, r.finetune_data) for r in t.itertuples()] == [
        ("7B", 2048, "None"), ("7B", 8192, "pile"), ("7B", 8192, "redpajama"), ("7B", 16384, "pile"),
        ("7B", 32768, "pile"), ("33B", 2048, "None"), ("33B", 8192, "pile")]
    assert [c for c in t.columns if "stderr" not in c][4:] == ["BoolQ", "PIQA", "Race-M", "Race-H", "WinoGrande"]
    assert t.iloc[0]["BoolQ"] == pytest.approx(76.1) and t.iloc[0]["BoolQ stderr"] == pytest.approx(0.8)
    tables.write_table(t, "Table 5", kind.note(bench_records()), md=tmp_path / "t.md", csv=tmp_path / "t.csv",
                       tex=tmp_path / "t.tex", disp=kind.display(t))
    md = (tmp_path / "t.md").read_text()
    assert "| 76.1 ± 0.8 " in md and "Fine-tune on" in md and "stderr" not in md.split("\n\n", 2)[2]
    back = tables.read_table(tmp_path / "t.csv")
    assert back.iloc[0]["finetune_data"] == "None" and back.iloc[4]["Race-M"] == pytest.approx(50.1)


def t5_findings(cells):
    from pi_repro.kinds import KINDS

    t = KINDS["benchmarks"].frame(bench_records(cells))
    res = kinds.check_findings({"Table 5": {"kind": "benchmarks", "dataset": None, "frame": t}}, 2048)
    return [(r["finding"], r["where"].split(" ", 2)[2], r["status"]) for r in res if r["finding"].startswith("5")], res


def test_finding_5_holds_on_the_papers_table_5_and_fails_otherwise():
    got, res = t5_findings(PAPER_T5)
    assert got == [("5a", "7B PI-8192 (pile)", "PASS"), ("5b", "7B PI (pile)", "PASS"),
                   ("5a", "7B PI-8192 (redpajama)", "PASS"), ("5a", "33B PI-8192 (pile)", "PASS")]
    nums = res[[r["finding"] for r in res].index("5b")]["numbers"]
    assert nums["PI-8192 mean change"] == pytest.approx(-1.32) and nums["PI-32768 mean change"] == pytest.approx(-4.8)
    worse = {**PAPER_T5, ("7B", 8192, "pile"): (70.0, 75.0, 50.0, 39.0, 66.0)}  # -3.9 at 8192
    assert ("5a", "7B PI-8192 (pile)", "FAIL") in t5_findings(worse)[0]
    flat = {**PAPER_T5, ("7B", 32768, "pile"): (75.0, 78.9, 55.7, 42.2, 69.6)}  # 32768 better than 16384
    assert ("5b", "7B PI (pile)", "FAIL") in t5_findings(flat)[0]
    no_base = {k: v for k, v in PAPER_T5.items() if k[0] == "33B" and k[2] != "None"}
    assert t5_findings(no_base)[0] == [("5", "33B", "n/a")]


def test_windows_table_shows_the_tokens_past_a_position_beside_each_window(tmp_path):
    recs = [write_record(tmp_path, "books", "s", "base", {32: 5.0, 64: 80.0}, 32),
            write_record(tmp_path, "books", "s", "PI-64/step0", {32: 6.0, 64: 5.5}, 64)]
    for p, past in zip(recs, ({32: None, 64: 120.0}, {32: None, 64: 5.1})):
        rec = json.loads(open(p).read())
        for w, v in past.items():
            rec["windows"][str(w)]["past"] = {"position": 32, "perplexity": v, "n_scored_tokens": 0 if v is None else 9}
        open(p, "w").write(json.dumps(rec))
    t = tables.windows_table(cells(recs))
    # no window of 32 scored a token past 32 here: that column is left out
    assert list(t.columns) == ["size", "model_ctx", "method", "32", "64", "64, pos >= 32"]
    assert list(t["64, pos >= 32"]) == [120.0, 5.1]
    assert list(t["64"]) == [80.0, 5.5]


def test_finding_3_is_not_applicable_to_pi_without_fine_tuning(tmp_path):
    t1, _, L = make_tables(tmp_path)
    res = findings.windows_findings("Table 1", t1, L, set(), untrained={("s", 64)})
    three = [r for r in res if r["finding"].startswith("3")]
    assert len(three) == 3 and all(r["status"] == "n/a" and "not fine-tuned" in r["reason"] for r in three)
    assert {r["status"] for r in findings.windows_findings("Table 1", t1, L, set()) if r["finding"] == "3a"} == {"PASS"}


@pytest.mark.parametrize("case, change, want", [
    ("holds", {}, {("8a", "NTK"): "PASS", ("8a", "YaRN"): "PASS", ("8b", "YaRN"): "PASS"}),
    ("ntk-worse-untrained", {("NTK", 64): {0: 6.0}}, {("8a", "NTK"): "FAIL"}),
    ("yarn-worse-tuned", {("YaRN", 64): {10: 4.5}}, {("8a", "YaRN"): "PASS", ("8b", "YaRN"): "FAIL"}),
    ("yarn-not-tuned", {("YaRN", 64): {10: None}}, {("8b", "YaRN"): "n/a"}),
])
def test_findings_8a_8b_compare_the_methods_after_pi_with_pi(case, change, want):
    """The YaRN paper's claims on a steps table: NTK-aware and YaRN at step 0 below PI at step 0 (8a), YaRN at the
    last step both have at or below PI (8b); none of them on a table without such rows (the default's)."""
    cells = {("PI", 64): {0: 5.5, 10: 4.0}, ("NTK", 64): {0: 5.0, 10: 4.2}, ("YaRN", 64): {0: 4.8, 10: 3.9}}
    t = frame(cells, change)
    res = findings.methods_findings("Table 3", t)
    got = {(r["finding"], r["where"].split()[-1] if r["finding"] == "8a" else "YaRN"): r["status"] for r in res}
    assert {k: got[k] for k in want} == want, got
    assert findings.methods_findings("Table 3", frame(BASE_T3, {})) == []


def test_finding_8c_yarn_keeps_retrieval_inside_l_where_pi_loses_it():
    def row(method, ctx, window, k0):
        return {"size": "s", "model_ctx": ctx, "method": method, "mixture": "-", "window": window, "k_top": window,
                "0": k0}

    t = pd.DataFrame([row("None", 32, 32, 30), row("PI", 128, 128, 0), row("YaRN", 128, 128, 34)])
    assert [r["status"] for r in findings.passkey_methods_findings("T4", t, 32)] == ["PASS"]
    t.loc[t["method"] == "YaRN", "0"] = 20
    assert [r["status"] for r in findings.passkey_methods_findings("T4", t, 32)] == ["FAIL"]
    assert findings.passkey_methods_findings("T4", t[t["method"] != "YaRN"], 32) == []
