import json


from pi_repro import findings, tables


def write_record(root, dataset, size, model, window_ppl, model_window):
    p = root / "eval" / "ppl" / dataset / size / model / "ppl.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"model_window": model_window, "stride": 8, "windows": {
        str(w): {"perplexity": v, "ci95": [v * 0.9, v * 1.1], "n_scored_tokens": 100, "n_docs": 2}
        for w, v in window_ppl.items()}}))
    return str(p)


def make_tables(tmp_path, pi_lp=4.0, ft_lp=5.0, none_2l=80.0):
    L = 32
    recs = [
        write_record(tmp_path, "pg19", "s", "base", {32: 5.0, 64: none_2l, 16: 6.0}, L),  # columns sort numerically
        write_record(tmp_path, "pg19", "s", "PI-64/step10", {16: 6.0, 32: 4.5, 64: pi_lp}, 64),
        write_record(tmp_path, "pg19", "s", "FT-64/step10", {16: 6.0, 32: 4.8, 64: ft_lp}, 64),
        write_record(tmp_path, "pg19", "s", "CT-64/step10", {16: 6.0, 32: 4.9, 64: 50.0}, L),
    ]
    t1 = tables.windows_table(tables.load_cells(recs))
    steps = [write_record(tmp_path, "pg19", "s", f"PI-64/step{n}", {64: v}, 64) for n, v in ((0, 7.0), (10, pi_lp))]
    t3 = tables.steps_table(tables.load_cells(steps, only_model_window=True))
    return t1, t3, L


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
    res = findings.check(t1, t1, t3, L)
    assert status(res, "1") == ["PASS", "PASS"] and status(res, "1m") == ["PASS", "PASS"] and status(res, "2") == ["PASS"]
    assert set(status(res, "3a") + status(res, "3b") + status(res, "3c")) == {"PASS"}
    assert status(res, "0") == ["PASS", "PASS"]  # CT@L 4.9 vs None@L 5.0: 2% change
    assert "PASS" in findings.to_markdown(res)


def test_findings_fail_visibly_when_it_does_not(tmp_path):
    t1, t3, L = make_tables(tmp_path, pi_lp=5.5, ft_lp=5.0, none_2l=6.0)
    res = findings.check(t1, t1, t3, L)
    assert status(res, "1") == ["FAIL", "FAIL"] and status(res, "1m") == ["FAIL", "FAIL"]  # 6.0/5.0: no blow-up
    assert status(res, "3a") == ["FAIL", "FAIL"] and status(res, "3b") == ["FAIL", "FAIL"]
    md = findings.to_markdown(res)
    assert "FAIL" in md and "5.500" in md  # the numbers used are printed
