"""The paper's perplexity findings, checked on a run's Tables 1-3 with the numbers printed (pass or fail).

(0) The base model is close to converged at L: the control CT (trained further at L for the fine-tuning budget)
    changes its perplexity at L by at most a few percent (5%), so fine-tuning measures extension, not training.
(1) Without fine-tuning, perplexity rises steadily past L and much faster than inside L (extrapolation fails):
    None rises with every window past L, by at least RISE (50%) from L to 2L, and the ratio None@2L / None@L
    exceeds the ratio None@L / None@(L/2).
(1m) The magnitude of that failure as in the paper (LLaMA: > 10^3 at 2L): None at 2L more than 10x None at L.
(2) PI without fine-tuning at 2L is better than extrapolation at 2L (and within a few times of None at L).
(3) After fine-tuning, PI at L' is at or below PI at L and below FT at L', each read against the control CT
    (the base model trained further at L on the same tokens): PI at L' is also below CT at L, so the gain is not
    just more training.
"""
from __future__ import annotations

import pandas as pd

from .tables import value

FEW_TIMES = 3.0
BLOW_UP = 10.0
RISE = 1.5
CONVERGED = 0.05


def _fmt(x):
    return "n/a" if x is None else f"{x:.3f}"


def check(t1: pd.DataFrame, t2: pd.DataFrame, t3: pd.DataFrame, L: int, names=("Table 1", "Table 2")) -> list[dict]:
    out = []

    def add(fid, where, claim, ok, numbers):
        out.append({"finding": fid, "where": where, "claim": claim,
                    "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
                    "numbers": {k: v for k, v in numbers.items()}})

    for name, t in zip(names, (t1, t2)):
        for size in dict.fromkeys(t["size"].astype(str)):
            win = sorted(int(c) for c in t.columns if c.isdigit())
            none = {w: value(t, size, "None", w) for w in win}
            past = [none[w] for w in win if w >= L and none[w] is not None]
            half, at_l, at_2l = none.get(L // 2), none.get(L), none.get(2 * L)
            ok = magnitude = None
            if at_l and at_2l:
                rising = all(b > a for a, b in zip(past, past[1:]))
                inside = (at_l / half) if half else None
                ok = rising and at_2l / at_l >= RISE and (inside is None or at_2l / at_l > inside)
                magnitude = at_2l / at_l > BLOW_UP
            nums = {f"None@{w}": none[w] for w in win} | {"ratio 2L/L": (at_2l / at_l) if at_l and at_2l else None,
                                                         "ratio L/(L/2)": (at_l / half) if half and at_l else None}
            add("1", f"{name} {size}", f"no fine-tuning: perplexity rises at every window past L, by >= {RISE:g}x at 2L,"
                " and faster past L (ratio 2L/L) than inside it (ratio L/(L/2))", ok, nums)
            add("1m", f"{name} {size}", f"no fine-tuning: the blow-up has the paper's magnitude (>{BLOW_UP:g}x at 2L; "
                "LLaMA: >10^3)", magnitude, nums)
            for ct_ctx in sorted({int(c) for c in t[t["method"] == "CT"]["model_ctx"].astype(int)}):
                ct_l = value(t, size, "CT", L, ct_ctx)
                change = None if ct_l is None or at_l is None else ct_l / at_l - 1
                add("0", f"{name} {size} CT-{ct_ctx}", f"base model converged: more training at L changes "
                    f"perplexity at L by at most {CONVERGED:.0%}", None if change is None else abs(change) <= CONVERGED,
                    {f"None@{L}": at_l, f"CT-{ct_ctx}@{L}": ct_l, "relative change": change})
            for ext_ctx in sorted({int(c) for c in t[t["method"] == "PI"]["model_ctx"].astype(int)}):
                pi_lp, pi_l = value(t, size, "PI", ext_ctx, ext_ctx), value(t, size, "PI", L, ext_ctx)
                ft_lp = value(t, size, "FT", ext_ctx, ext_ctx)
                ct_l = value(t, size, "CT", L, ext_ctx)
                nums = {f"PI-{ext_ctx}@{ext_ctx}": pi_lp, f"PI-{ext_ctx}@{L}": pi_l, f"FT-{ext_ctx}@{ext_ctx}": ft_lp,
                        f"CT-{ext_ctx}@{L}": ct_l, f"None@{L}": none.get(L)}
                add("3a", f"{name} {size} L'={ext_ctx}", "fine-tuned PI at L' is at or below PI at L",
                    None if pi_lp is None or pi_l is None else pi_lp <= pi_l, nums)
                add("3b", f"{name} {size} L'={ext_ctx}", "fine-tuned PI at L' is below FT at L'",
                    None if pi_lp is None or ft_lp is None else pi_lp < ft_lp, nums)
                add("3c", f"{name} {size} L'={ext_ctx}", "fine-tuned PI at L' is below the control CT at L "
                    "(the gain is not just more training)", None if pi_lp is None or ct_l is None else pi_lp < ct_l, nums)
    for size in dict.fromkeys(t3["size"].astype(str)):
        pi0 = value(t3, size, "PI", 0, 2 * L)
        none_2l, none_l = value(t1, size, "None", 2 * L), value(t1, size, "None", L)
        ok = None if pi0 is None or none_2l is None else (pi0 < none_2l and pi0 < FEW_TIMES * none_l)
        add("2", f"Table 3 / Table 1 {size}", "PI without fine-tuning at 2L beats extrapolation at 2L and stays "
            f"within {FEW_TIMES:g}x of None at L", ok,
            {f"PI-{2 * L} step0@{2 * L}": pi0, f"None@{2 * L}": none_2l, f"None@{L}": none_l})
    return out


def to_markdown(results: list[dict]) -> str:
    lines = ["# Findings of the paper, checked on this run", "",
             "| finding | where | claim | status | numbers |", "|---|---|---|---|---|"]
    for r in results:
        nums = ", ".join(f"{k} = {_fmt(v)}" for k, v in r["numbers"].items())
        lines.append(f"| {r['finding']} | {r['where']} | {r['claim']} | **{r['status']}** | {nums} |")
    passed = sum(r["status"] == "PASS" for r in results)
    failed = sum(r["status"] == "FAIL" for r in results)
    lines += ["", f"{passed} passed, {failed} failed, {len(results) - passed - failed} not applicable."]
    return "\n".join(lines) + "\n"
