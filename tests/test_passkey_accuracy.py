"""The passkey_accuracy table kind (pi_repro.kinds.PasskeyAccuracy): retrieval accuracy per window from the passkey
task's records, its Wilson interval, and the audit's judgment of a published fraction (the YaRN repository's
data/passkey-32k.csv, resources/yarn/cells.csv) beside ours: PASS when 0 is inside the 95% Newcombe interval of the
difference. Records are written by hand, as rule passkey writes them; config errors are refused with the key."""
import copy
from pathlib import Path

import pandas as pd
import pytest
from pi_repro import config as C
from pi_repro import paper, tables, targets
from pi_repro.kinds import KINDS
from pi_repro.passkey import newcombe, wilson

ROOT = Path(__file__).resolve().parents[1]
KIND = KINDS["passkey_accuracy"]
WINDOWS = (2048, 4096, 8192, 16384, 32768)


def record(method: str, step: int, correct: dict[int, list[int]], trials: int = 5, ctx: int = 32768) -> dict:
    """A passkey record: ``correct`` maps a window to the hits at each of its k (of ``trials`` keys each)."""
    windows = {}
    for w, hits in correct.items():
        per_k = [{"k": 100 * (i + 1), "correct": h, "trials": trials, "accuracy": h / trials,
                  "ci95": list(wilson(h, trials))} for i, h in enumerate(hits)]
        windows[str(w)] = {"window": w, "k_top": 100 * len(hits), "k_max": 0, "per_k": per_k}
    return {"task": "passkey", "dataset": "synthetic", "size": "7B", "method": method, "ctx": ctx, "tag": None,
            "step": step, "mixture": "corpus", "windows": windows,
            "protocol": {"num_k": len(next(iter(correct.values()))), "trials": trials, "threshold": 0.2,
                         "intro": True, "seed": 0}}


def of_50(x: int) -> list[int]:
    """x hits of 50 prompts: 10 distances x 5 keys."""
    return [min(5, max(0, x - 5 * i)) for i in range(10)]


def test_a_window_pools_every_k_and_key_with_its_wilson_interval(tmp_path):
    recs = [record("YaRN", 400, {2048: of_50(45), 32768: of_50(34)}), record("YaRN", 0, {32768: of_50(3)}),
            record("PI", 400, {2048: of_50(50), 32768: of_50(0)})]
    t = KIND.frame(recs)
    assert list(t.columns) == ["size", "model_ctx", "method", "mixture", "step", "2048", "2048 lo", "2048 hi",
                               "2048 n", "32768", "32768 lo", "32768 hi", "32768 n"]
    assert [(r.method, r.step) for r in t.itertuples()] == [("PI", 400), ("YaRN", 0), ("YaRN", 400)]
    yarn = t.iloc[2]
    assert (yarn["2048"], yarn["2048 n"], yarn["32768"]) == (0.9, 50, 0.68)
    assert (yarn["2048 lo"], yarn["2048 hi"]) == pytest.approx(wilson(45, 50))
    assert pd.isna(t.iloc[1]["2048"]) and pd.isna(t.iloc[1]["2048 n"])  # step 0 was not read at 2048
    assert (t.iloc[0]["32768 lo"], t.iloc[0]["2048 hi"]) == (0.0, 1.0)  # exact at 0 of n and n of n
    only = KIND.frame(recs, cells=[["7B", "YaRN-32768/step400", 2048]])  # the table's own cells (its layout)
    assert len(only) == 1 and "32768" not in only.columns
    disp = KIND.display(t)
    assert list(disp.columns)[:5] == ["Size", "Model ctx", "Method", "Fine-tuning data", "Step"]
    assert disp.iloc[2]["2048"] == "0.90 [0.79, 0.96]" and disp.iloc[1]["2048"] == "-"
    tables.write_table(t, "Table 8", KIND.note(recs), md=tmp_path / "t.md", csv=tmp_path / "t.csv",
                       tex=tmp_path / "t.tex", fmt=KIND.fmt, disp=disp)
    back = tables.read_table(tmp_path / "t.csv")
    assert back.iloc[2]["2048"] == 0.9 and back.iloc[2]["2048 n"] == 50
    assert "50 prompts (10 distances k" in (tmp_path / "t.md").read_text()
    with pytest.raises(ValueError, match="passkey records for the cell"):
        KIND.frame(recs + recs[:1])


def test_newcombes_interval_is_the_published_one():
    """Newcombe (1998), Table II, example (a): 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339."""
    lo, hi = newcombe(56 / 70, wilson(56, 70), 48 / 80, wilson(48, 80))
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


@pytest.fixture(scope="module")
def methods_paper():
    return C.load(ROOT / "config/methods-paper.yaml")


def cell(method: str, column: int, value: str) -> dict:
    return {"table": "table8", "size": "7B", "model_ctx": 32768, "method": method, "finetune_data": None,
            "column": str(column), "value": value, "source": "test"}


def judged(cfg, tmp_path, recs, cells):
    t = KIND.frame(recs)
    t.to_csv(tmp_path / "table8.csv", index=False)
    return {(r["method"], r["column"], r["value"]): r for r in
            paper.side_by_side(cfg, cells, {"table8": tmp_path / "table8.csv"})}


def test_a_published_fraction_passes_inside_both_binomial_uncertainties_and_fails_outside(methods_paper, tmp_path):
    """Ours 45/50 = 0.90 (Wilson [0.79, 0.96]). Theirs 0.76 (38/50) lies outside our interval, yet passes: their
    own 50 trials widen it (Newcombe's lower bound -0.009) — a rule of our interval alone would fail it. Theirs
    0.68 (34/50) fails (lower bound +0.06) — adding the two half-widths instead of combining them in quadrature
    would pass it (0.22 - 0.114 - 0.112 < 0). The cell read is the extension's final step (400), not step 0."""
    recs = [record("YaRN", 400, {2048: of_50(45)}), record("YaRN", 0, {2048: of_50(0)})]
    side = judged(methods_paper, tmp_path, recs, [cell("YaRN", 2048, "0.76"), cell("YaRN", 2048, "0.68"),
                                                  cell("YaRN", 4096, "1.0"), cell("YaRN", 2048, "0.53")])
    ok, bad = side[("YaRN", "2048", "0.76")], side[("YaRN", "2048", "0.68")]
    assert not wilson(45, 50)[0] <= 0.76 <= wilson(45, 50)[1]
    assert ok["status"] == "PASS" and ok["ours"] == 0.9 and ok["diff"] == pytest.approx(0.14)
    assert ok["tolerance"] == {"reference_trials": 50}
    assert ok["why"] == ("ours 45/50 [0.79, 0.96], theirs 38/50 [0.63, 0.86] (Wilson 95%); difference +0.14, "
                         "Newcombe 95% [-0.01, +0.29] holds 0")
    assert bad["status"] == "FAIL" and "Newcombe 95% [+0.06, +0.37] excludes 0" in bad["why"]
    assert side[("YaRN", "4096", "1.0")]["status"] == "missing"  # no such window in the table
    assert side[("YaRN", "2048", "0.53")]["status"] == "FAIL" and "no count of 50" in side[("YaRN", "2048", "0.53")][
        "why"]
    cfg = copy.deepcopy(methods_paper)
    cfg["tables"]["table8"]["tolerance"] = {"absolute": 0.25}
    side = judged(cfg, tmp_path, recs, [cell("YaRN", 2048, "0.68")])
    assert side[("YaRN", "2048", "0.68")]["status"] == "PASS"  # 0.22 <= 0.25
    cfg["tables"]["table8"]["tolerance"] = {"reference_trials": 500}  # their 0.76 as sure as 380/500
    side = judged(cfg, tmp_path, recs, [cell("YaRN", 2048, "0.76")])
    assert side[("YaRN", "2048", "0.76")]["status"] == "FAIL"


@pytest.mark.parametrize("mutate, match", [
    (lambda t: t.update(dataset="proofpile"), r"tables\.table8\.dataset: a passkey_accuracy table generates"),
    (lambda t: t["rows"][0].update(steps=[200]), r"tables\.table8\.rows\[0\]\.steps: step 200 is not one"),
    (lambda t: t["rows"][0].update(windows=[]), r"tables\.table8\.rows"),
    (lambda t: t["rows"][0].pop("ctx"), r"tables\.table8\.rows\[0\]: an extension row needs ctx"),
    (lambda t: t["rows"].append(dict(t["rows"][0])), r"tables\.table8\.rows\[3\]: the same model twice"),
    (lambda t: t.update(tolerance={"relative": 0.03}), r"tables\.table8\.tolerance: a passkey_accuracy table is "
                                                       r"judged by reference_trials or absolute, not relative"),
    (lambda t: t.update(tolerance={"reference_trials": 0}), r"tables\.table8\.tolerance"),
])
def test_a_bad_entry_is_refused_with_its_key(methods_paper, mutate, match):
    cfg = copy.deepcopy(methods_paper)
    mutate(cfg["tables"]["table8"])
    with pytest.raises(targets.ConfigError, match=match):
        C.validate(cfg)


def test_reference_trials_judge_no_other_kind(methods_paper):
    cfg = copy.deepcopy(methods_paper)
    cfg["tables"]["table4"]["tolerance"] = {"reference_trials": 50}
    with pytest.raises(targets.ConfigError, match=r"tables\.table4\.tolerance: a passkey table is judged by "
                                                  r"relative or absolute or grid_steps, not reference_trials"):
        C.validate(cfg)


def test_every_published_passkey_cell_is_judged_against_its_models_row(methods_paper, tmp_path):
    """resources/yarn/cells.csv's table8 cells (PI, NTK-aware, YaRN; NTK-by-parts has no method here): each has one
    counterpart in methods-paper's plan; records with the published counts (50 prompts per window) pass all 15, and
    NTK-aware retrieving everything at 32768, where it published 0.0, fails that one cell only."""
    cells = [c for c in paper.load_cells(ROOT / "resources/yarn/cells.csv") if c["table"] == "table8"]
    assert len(cells) == 15 and {c["method"] for c in cells} == {"PI", "NTK", "YaRN"}
    counts = paper.counterparts(methods_paper, cells)
    assert set(counts.values()) == {1}
    published = {(c["method"], int(c["column"])): round(float(c["value"]) * 50) for c in cells}
    recs = [record(m, 400, {w: of_50(published[(m, w)]) for w in WINDOWS}) for m in ("PI", "NTK", "YaRN")]
    side = judged(methods_paper, tmp_path, recs, cells)
    assert len(side) == 15 and {r["status"] for r in side.values()} == {"PASS"}
    recs[1] = record("NTK", 400, {w: of_50(50 if w == 32768 else published[("NTK", w)]) for w in WINDOWS})
    side = judged(methods_paper, tmp_path, recs, cells)
    assert [k for k, r in side.items() if r["status"] != "PASS"] == [("NTK", "32768", "0.0")]
