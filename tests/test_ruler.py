"""RULER through lm-evaluation-harness (pi_repro.ruler, table kind ``ruler``): the score of one sample checked by
hand against the model's own greedy output; RULER's metric and effective length written from their definitions;
the config checks; the table and its finding from records; the cost plan prices its jobs."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from conftest import smoke_config  # noqa: E402
from pi_repro import config as C, cost, kinds, ruler, tables, targets  # noqa: E402
from pi_repro.findings import ruler_findings  # noqa: E402


def test_the_metric_is_rulers_string_match_all():
    """The fraction of the targets found in the output, case-insensitive, control characters read as breaks:
    the harness's own function agrees on every case."""
    from lm_eval.tasks.ruler.common_utils import postprocess_pred, string_match_all

    cases = [(" The special magic number is 7281934.", ["7281934"], 1.0),
             ("answer: ABC and d", ["abc", "D", "x"], 2 / 3),
             ("\x01 4432\x02", ["4432"], 1.0),
             ("nothing", ["12"], 0.0),
             ("ab\x0bc", ["ab\nc"], 1.0)]
    for gen, want, score in cases:
        assert ruler.match_all(gen, want) == pytest.approx(score)
        assert string_match_all(postprocess_pred([gen]), [want]) == pytest.approx(score)


def test_the_effective_length_is_the_last_length_of_an_unbroken_run_above_the_threshold():
    assert ruler.effective_length({4096: 90, 8192: 85, 16384: 70, 32768: 86}, 85) == 8192
    assert ruler.effective_length({4096: 84, 8192: 99}, 85) == 0
    assert ruler.effective_length({4096: 85.0}, 85) == 4096  # at the threshold counts
    assert ruler.effective_length({}, 50) == 0


def test_tasks_the_pipeline_cannot_build_offline_are_named():
    assert ruler.check_tasks(list(ruler.SYNTHETIC)) == []
    bad = ruler.check_tasks(["niah_single_2", "ruler_qa_squad", "nope"])
    assert "paul_graham_essays" in bad[0] and "SQuAD" in bad[1] and "not a RULER task" in bad[2]
    assert set(ruler.SYNTHETIC) | set(ruler.DOWNLOADED) == {
        "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
        "niah_multiquery", "niah_multivalue", "ruler_vt", "ruler_cwe", "ruler_fwe", "ruler_qa_squad",
        "ruler_qa_hotpot"}  # RULER's 13 tasks


def smoke_with(**tables_and_blocks) -> dict:
    cfg = smoke_config()
    for k, v in tables_and_blocks.items():
        target = cfg["tables"] if k.startswith("table") else cfg
        if v is None:
            target.pop(k, None)
        else:
            target[k] = v
    return cfg


@pytest.mark.parametrize("change, message", [
    ({"ruler": None}, "needs the config's ruler block"),
    ({"ruler": {"lengths": [1024], "tasks": ["niah_single_2"]}}, "paul_graham_essays"),
    ({"table7": {"kind": "ruler", "threshold": 50, "rows": [{"size": "tiny", "method": "PI", "ctx": 64}]}},
     "no length of ruler.lengths"),
    ({"table7": {"kind": "ruler", "rows": [{"size": "tiny", "method": "PI", "ctx": 64, "lengths": [1024]}]}},
     "threshold is the base model's mean at L"),
    ({"table7": {"kind": "ruler", "threshold": 50, "rows": [{"size": "tiny", "method": "PI", "ctx": 64,
                                                              "steps": [5], "lengths": [1024]}]}},
     "step 5 is not one of the extension's checkpoints"),
    ({"table7": {"kind": "ruler", "dataset": "pg19", "threshold": 50,
                 "rows": [{"size": "tiny", "method": "None", "lengths": [1024]}]}}, "generates its prompts"),
])
def test_bad_ruler_tables_are_refused_by_name(change, message):
    cfg = smoke_with(**change)
    with pytest.raises(targets.ConfigError, match=message):
        C.validate(cfg)


def test_the_smoke_ruler_table_plans_one_job_per_model_with_its_lengths_and_prices_it():
    cfg = C.validate(smoke_config())
    assert kinds.table_records(cfg, "table7") == [("ruler", "synthetic", "tiny", "base"),
                                                  ("ruler", "synthetic", "tiny", "PI-64/step6")]
    assert kinds.eval_windows(cfg, "ruler", "synthetic", "tiny", "PI-64/step6") == [1024]
    rows = [r for r in cost.plan(cfg) if r["rule"] == "ruler"]
    assert len(rows) == 2 and all(r["gpu_hours"] > 0 for r in rows), rows
    assert [r["what"] for r in rows] == ["tiny base at 1024", "tiny PI-64/step6 at 1024"]


def record(method, ctx, step, means: dict[int, float], tasks=("niah_single_1", "ruler_vt")) -> dict:
    return {"size": "7B", "method": method, "ctx": ctx, "step": step, "harness_version": "0.4.13",
            "protocol": {"tasks": list(tasks), "samples": 4, "answer_room": 128},
            "lengths": {str(x): {"mean": m, "tasks": {t: {"score": m + (i - 0.5) * 2, "n": 4}
                                                      for i, t in enumerate(tasks)}} for x, m in means.items()}}


def test_the_table_shows_each_task_and_the_mean_and_each_models_effective_length():
    recs = [record("PI", 8192, 1000, {2048: 80, 4096: 78, 8192: 70}),
            record("None", 2048, 0, {2048: 75, 4096: 10}),
            record("FT", 8192, 1000, {2048: 79, 4096: 60, 8192: 20})]
    t = tables.ruler_table(recs, 2048)
    assert list(t["method"]) == ["None"] * 3 + ["FT"] * 3 + ["PI"] * 3
    assert list(t["task"][:3]) == ["mean", "niah_single_1", "ruler_vt"]
    mean = t[t["task"] == "mean"].set_index("method")
    assert mean.loc["PI", "effective"] == 4096  # 78 >= 75 (the base model's mean at L), 70 < 75
    assert mean.loc["FT", "effective"] == 2048 and mean.loc["None", "effective"] == 2048
    assert pd.isna(t[t["task"] == "ruler_vt"]["effective"]).all()
    assert tables.ruler_table(recs, 2048, threshold=50).set_index(["method", "task"]).loc[("PI", "mean"),
                                                                                            "effective"] == 8192
    found = {r["where"]: r["status"] for r in ruler_findings("table7", t, 2048, {"9": "x"})}
    assert found == {"table7 7B PI-8192 step 1000": "PASS"}
    low = tables.ruler_table([record("PI", 8192, 1000, {2048: 70, 4096: 78}), recs[1]], 2048)
    assert [r["status"] for r in ruler_findings("table7", low, 2048, {"9": "x"})] == ["FAIL"]
    with pytest.raises(ValueError, match="ruler records for the cell"):
        tables.ruler_table([recs[0], recs[0]], 2048)
    tagged = dict(record("PI", 8192, 1000, {2048: 90, 4096: 90, 8192: 90}), tag="redpajama")  # another model
    both = tables.ruler_table(recs + [tagged], 2048)
    assert list(both[both["task"] == "mean"]["tag"]) == ["-", "-", "-", "redpajama"]
    assert [r["where"] for r in ruler_findings("table7", both, 2048, {"9": "x"})] == [
        "table7 7B PI-8192 step 1000", "table7 7B PI-8192-redpajama step 1000"]
    shown = tables.ruler_display(both)
    assert list(shown.columns[:6]) == ["Size", "Model ctx", "Method", "Tag", "Step", "Task"]
    assert list(shown["Effective length"][:2]) == ["2048", "-"] and shown["2048"].iloc[0] == "75.0"


@pytest.mark.slow
def test_one_samples_score_checked_by_hand_against_the_models_greedy_output(smollm2_dir):
    """SmolLM2-135M on RULER's single-needle task at 1024 tokens: the prompt the harness built, fed to the model
    with our own greedy loop, gives the output the record holds, and that output holds the needle's value, so the
    score is 1 (a scorer that returns 0, or an output from another prompt, fails here)."""
    from pi_repro import modeling

    model, tok = modeling.load_model(smollm2_dir), modeling.load_tokenizer(smollm2_dir)
    rec = ruler.evaluate(model, tok, smollm2_dir, ["niah_single_1"], [1024], 1, seed=0)
    (s,) = rec["samples"]
    assert s["length"] == 1024 and s["prompt_tokens"] + s["max_gen_toks"] <= 1024 + ruler.RULER_ANSWER
    ids = tok(s["prompt"], return_tensors="pt", add_special_tokens=False).input_ids
    out, past, step = [], None, ids
    with torch.no_grad():
        for _ in range(s["max_gen_toks"]):  # greedy: the most likely next token, until end of text
            o = model(step, past_key_values=past, use_cache=True)
            past, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            step = torch.tensor([[nxt]])
    mine = tok.decode(out, skip_special_tokens=True)
    assert mine.strip() == s["generation"].strip()
    (value,) = s["target"]
    assert value.isdigit() and value in mine  # the needle's number, retrieved
    assert s["score"] == 1.0 and rec["lengths"]["1024"]["mean"] == 100.0
    assert json.dumps(rec)  # a record is plain JSON


def test_quoted_cells_of_another_model_are_shown_after_ours_and_never_judged():
    from pi_repro import paper

    cells = paper.load_cells(ROOT / "resources/ruler/cells.csv")
    assert all(paper.other_work(c) for c in cells) and [c["value"] for c in cells] == ["88.2", "81.1", "69.4", "63.0"]
    recs = [record("PI", 8192, 1000, {2048: 80, 4096: 78, 8192: 70}), record("None", 2048, 0, {2048: 75})]
    t = tables.ruler_table(recs, 2048, quoted=cells)
    q = t[t["method"] == "Together-7B-32K"]
    assert len(q) == 1 and q.index[0] == len(t) - 1 and list(q[["4096", "32768"]].iloc[0]) == [88.2, 63.0]
    assert pd.isna(q["effective"].iloc[0]) and pd.isna(q["step"].iloc[0])
    assert [r["where"] for r in ruler_findings("table7", t, 2048, {"9": "x"})] == ["table7 7B PI-8192 step 1000"]


def test_the_paper_dry_run_has_one_ruler_job_per_model_at_its_lengths_priced():
    """config/paper.yaml's table7: every extended 7B and 13B model at 4096 ... its window, the base models at L and 2L;
    each job in the cost plan; `snakemake table7` plans its upstream only (no perplexity, passkey or benchmark)."""
    import re
    import subprocess

    p = subprocess.run([sys.executable, "-m", "snakemake", "table7", "--configfile", "config/paper.yaml", "-n", "-p"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    jobs = dict(re.findall(r"ruler\.py --model results/paper/models/(\S+) --tasks \S+ --lengths ([\d,]+)", out))
    upto = {8192: "4096,8192", 16384: "4096,8192,16384", 32768: "4096,8192,16384,32768"}
    want = {f"{size}/base": "2048,4096" for size in ("7B", "13B")}
    want |= {f"{size}/FT-8192/step10000": upto[8192] for size in ("7B", "13B")}
    want |= {f"{size}/PI-{c}/step1000": upto[c] for size in ("7B", "13B") for c in upto}
    want["7B/PI-8192-redpajama/step1000"] = upto[8192]
    assert jobs == want
    counts = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}
    assert counts["ruler"] == 11 and not {"perplexity", "passkey", "benchmark", "summarize"} & set(counts)
    cfg = C.load(ROOT / "config/paper.yaml")
    rows = [r for r in cost.plan(cfg) if r["rule"] == "ruler"]
    assert len(rows) == 11 and all(r["gpu_hours"] > 0 for r in rows)


def test_an_evaluation_the_cluster_would_stop_at_its_time_limit_is_refused_by_name():
    """RULER's 500 prompts per task and length would take the 13B PI-32768 job an estimated 29.6 h on its GPU, past
    the paper cluster's 24 h: validation refuses it before anything runs (config/paper.yaml asks 200)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    cfg["ruler"]["samples"] = 500
    with pytest.raises(targets.ConfigError, match=r"sizes\.13B\.resources\.eval_runtime: job ruler 13B "
                                                  r"PI-32768/step1000 at 4096, 8192, 16384, 32768 needs an "
                                                  r"estimated 29\.6 h"):
        C.validate(cfg)
