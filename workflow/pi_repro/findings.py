"""The paper's findings, checked on a run's tables with the numbers printed (pass, fail, or n/a with the reason).
Each finding reads tables of one kind: the kind (pi_repro.kinds) calls its findings here on each of its tables
(``kinds.check_findings``) and names what they read (``reads``), printed n/a when the config has none.

(0) The base model is close to converged at L: the control CT (trained further at L for the fine-tuning budget)
    changes its perplexity at L by at most a few percent (5%), so fine-tuning measures extension, not training.
(1) Without fine-tuning, perplexity rises steadily past L and much faster than inside L (extrapolation fails):
    None rises with every window past L, by at least RISE (50%) from L to 2L, and the ratio None@2L / None@L
    exceeds the ratio None@L / None@(L/2).
(1m) The magnitude of that failure as in the paper: for a hub LLaMA base model, None at 2L above 10^3 (the paper's
    absolute statement); for a model trained here, None at 2L more than 10x None at L (the claim printed says which).
(2) PI without fine-tuning at its window L' is better than extrapolation at L' (and within a few times of None at
    L): each PI row of a steps table at step 0, against the windows table of the same dataset.
(3) After fine-tuning, PI at L' is at or below PI at L and below FT at L', each read against the control CT
    (the base model trained further at L on the same tokens): PI at L' is also below CT at L, so the gain is not
    just more training.
(4) Passkey retrieval (tables of kind passkey): (4a) after fine-tuning, PI's k_max reaches its window L' (the
    largest k tested; paper: at every checkpoint but one), (4b) FT's does not extend past about L: below its window,
    at most NEAR_L x L (paper: 1792-2560 from L = 2048 after up to 10000 steps), (4c) without fine-tuning the base
    model's k_max does not pass L at windows beyond L.
(5) Zero-shot benchmarks at the original window (tables of kind benchmarks): (5a) PI at its smallest extension
    keeps its quality: the mean change over the tasks from None is within SMALL_CHANGE points (paper: -1.3 for 7B
    at 8192, -0.5 for 33B); (5b) the loss grows with the extension (paper, 7B: -1.3, -2.6, -4.8 points at 8192,
    16384, 32768), each printed against the control CT's change (training alone) when the table has it.
(6) Theory (Figure 2, Theorem 2.1): (6a) the least-squares fit stays within [-1, 1] on [0, L] and exceeds 10^3
    beyond it (paper: > 8000); (6b) Theorem 2.1's bound holds at every fractional point tested, on the fit and on
    random coefficients; (6c) on the integer grid the extrapolation bound is hundreds of times the interpolation
    bound (paper: about 600x).
(8) The methods after PI (the YaRN paper's claims, hypotheses here, checked where a table has their rows): (8a) without
    fine-tuning, NTK-aware and YaRN at L' beat PI at L' (a steps table's step 0); (8b) after the same fine-tuning,
    YaRN at L' is at or below PI at L' (the last step both have); (8c) without fine-tuning, YaRN keeps passkey
    retrieval inside L (its k_max at L' is at least the base model's at L) where PI loses it (below that).
(7) Summarization (tables of kind summarization; the paper's Table 6): the extended model (PI, fine-tuned to
    summarize at L' with the document up to L') scores at least the base model fine-tuned the same way at L (the
    document cut to L) in ROUGE-1, ROUGE-2 and ROUGE-L, each a paired difference over the same test documents
    with its 95% bootstrap interval; printed beside the control CT's difference (more training, no extension)
    and the LEAD baseline, reported either way. (The paper shows only that PI-16384 is competitive with CoLT5.)
"""
from __future__ import annotations

import pandas as pd

from .summarization import ROUGE_LABELS
from .tables import RUN, value

FEW_TIMES = 3.0
BLOW_UP = 10.0
PAPER_BLOW_UP = 1e3  # the paper's statement for LLaMA at 2L (absolute perplexity)
RISE = 1.5
CONVERGED = 0.05
SMALL_CHANGE = 2.0  # points of accuracy
NEAR_L = 1.25  # the paper's largest FT k_max, 2560, over L = 2048


def _fmt(x):
    return "n/a" if x is None else (str(x) if isinstance(x, int) else f"{x:.3f}")


def windows_findings(name: str, t: pd.DataFrame, L: int, hub_sizes: set, untrained: set = frozenset()) -> list[dict]:
    """Findings 0, 1, 1m and 3 on one table of kind windows (``untrained``: the (size, ctx) of PI extensions that
    are not fine-tuned, `steps: 0`: finding 3 is about fine-tuned PI, n/a for them)."""
    out = []
    for size in dict.fromkeys(t["size"].astype(str)):
        win = sorted(int(c) for c in t.columns if c.isdigit())
        none = {w: value(t, size, "None", w) for w in win}
        past = [none[w] for w in win if w >= L and none[w] is not None]
        half, at_l, at_2l = none.get(L // 2), none.get(L), none.get(2 * L)
        ok = magnitude = None
        hub = size in hub_sizes
        if at_l and at_2l:
            rising = all(b > a for a, b in zip(past, past[1:]))
            inside = (at_l / half) if half else None
            ok = rising and at_2l / at_l >= RISE and (inside is None or at_2l / at_l > inside)
            magnitude = at_2l > PAPER_BLOW_UP if hub else at_2l / at_l > BLOW_UP
        nums = {f"None@{w}": none[w] for w in win} | {"ratio 2L/L": (at_2l / at_l) if at_l and at_2l else None,
                                                     "ratio L/(L/2)": (at_l / half) if half and at_l else None}
        out.append(result("1", f"{name} {size}", f"no fine-tuning: perplexity rises at every window past L, by >= "
                           f"{RISE:g}x at 2L, and faster past L (ratio 2L/L) than inside it (ratio L/(L/2))", ok, nums))
        claim = ("no fine-tuning: perplexity at 2L above 10^3, the paper's statement for LLaMA"
                 if hub else f"no fine-tuning: the blow-up has the paper's magnitude, relative for a model other "
                 f"than the paper's LLaMA: >{BLOW_UP:g}x at 2L (LLaMA: >10^3 absolute)")
        out.append(result("1m", f"{name} {size}", claim, magnitude, nums))
        for ct_ctx in sorted({int(c) for c in t[t["method"] == "CT"]["model_ctx"].astype(int)}):
            ct_l = value(t, size, "CT", L, ct_ctx)
            change = None if ct_l is None or at_l is None else ct_l / at_l - 1
            out.append(result("0", f"{name} {size} CT-{ct_ctx}", f"base model converged: more training at L changes "
                               f"perplexity at L by at most {CONVERGED:.0%}",
                               None if change is None else abs(change) <= CONVERGED,
                               {f"None@{L}": at_l, f"CT-{ct_ctx}@{L}": ct_l, "relative change": change}))
        for ext_ctx in sorted({int(c) for c in t[t["method"] == "PI"]["model_ctx"].astype(int)}):
            pi_lp, pi_l = value(t, size, "PI", ext_ctx, ext_ctx), value(t, size, "PI", L, ext_ctx)
            ft_lp = value(t, size, "FT", ext_ctx, ext_ctx)
            ct_l = value(t, size, "CT", L, ext_ctx)
            nums = {f"PI-{ext_ctx}@{ext_ctx}": pi_lp, f"PI-{ext_ctx}@{L}": pi_l, f"FT-{ext_ctx}@{ext_ctx}": ft_lp,
                    f"CT-{ext_ctx}@{L}": ct_l, f"None@{L}": none.get(L)}
            where = f"{name} {size} L'={ext_ctx}"
            if (size, ext_ctx) in untrained:
                pi_lp = pi_l = None  # step 0 is no fine-tuned PI: nothing of finding 3 applies
            why = f"PI-{ext_ctx} is not fine-tuned (steps: 0)" if (size, ext_ctx) in untrained else None
            out.append(result("3a", where, "fine-tuned PI at L' is at or below PI at L",
                               None if pi_lp is None or pi_l is None else pi_lp <= pi_l, nums, reason=why))
            out.append(result("3b", where, "fine-tuned PI at L' is below FT at L'",
                               None if pi_lp is None or ft_lp is None else pi_lp < ft_lp, nums, reason=why))
            out.append(result("3c", where, "fine-tuned PI at L' is below the control CT at L (the gain is not just "
                               "more training)", None if pi_lp is None or ct_l is None else pi_lp < ct_l, nums,
                               reason=why))
    return out


def steps_findings(name: str, t: pd.DataFrame, windows: dict, L: int) -> list[dict]:
    """Finding 2 on one table of kind steps, read against the windows table of the same dataset: each PI row's
    step 0 at its own window L' against extrapolation (None) at L'."""
    out = []
    for _, row in t[t["method"] == "PI"].iterrows():
        size, ctx = str(row["size"]), int(row["model_ctx"])
        pi0 = value(t, size, "PI", 0, ctx)
        none_ctx = value(windows["frame"], size, "None", ctx) if windows else None
        none_l = value(windows["frame"], size, "None", L) if windows else None
        ok = (None if pi0 is None or none_ctx is None or none_l is None
              else (pi0 < none_ctx and pi0 < FEW_TIMES * none_l))
        where = f"{name} / {windows['name'] if windows else 'no windows table'} {size} L'={ctx}"
        out.append(result("2", where, f"PI without fine-tuning at L' beats extrapolation at L' and stays within "
                           f"{FEW_TIMES:g}x of None at L", ok,
                           {f"PI-{ctx} step0@{ctx}": pi0, f"None@{ctx}": none_ctx, f"None@{L}": none_l},
                           reason=None if windows else "no windows table on this dataset to compare with"))
    return out


SUCCESSORS = ("NTK", "YaRN")  # the methods 8a compares with PI without fine-tuning


def methods_findings(name: str, t: pd.DataFrame) -> list[dict]:
    """Findings 8a and 8b on one table of kind steps: each NTK-aware / YaRN row against the PI row of the same size
    and L' (none when the table has no such pair)."""
    out = []
    steps = sorted(int(c) for c in t.columns if str(c).isdigit())
    for _, row in t[t["method"].isin(SUCCESSORS)].iterrows():
        size, method, ctx = str(row["size"]), row["method"], int(row["model_ctx"])
        if t[(t["method"] == "PI") & (t["model_ctx"] == ctx) & (t["size"].astype(str) == size)].empty:
            continue  # no PI row to compare with
        where = f"{name} {size} L'={ctx}"
        pi0, m0 = value(t, size, "PI", 0, ctx), value(t, size, method, 0, ctx)
        out.append(result("8a", f"{where} {method}", f"without fine-tuning, {method} at L' beats PI at L' (YaRN paper)",
                          None if pi0 is None or m0 is None else m0 < pi0,
                          {f"{method}-{ctx} step0": m0, f"PI-{ctx} step0": pi0},
                          reason=None if pi0 is not None and m0 is not None else "no step 0 of both"))
        if method == "YaRN":
            both = [s for s in steps if s > 0 and value(t, size, "PI", s, ctx) is not None
                    and value(t, size, "YaRN", s, ctx) is not None]
            last = max(both) if both else None
            y, p = (value(t, size, "YaRN", last, ctx), value(t, size, "PI", last, ctx)) if both else (None, None)
            out.append(result("8b", where, "after the same fine-tuning, YaRN at L' is at or below PI at L' (YaRN "
                              "paper)", None if last is None else y <= p,
                              {} if last is None else {f"YaRN-{ctx} step{last}": y, f"PI-{ctx} step{last}": p},
                              reason=None if both else "no fine-tuned step of both"))
    return out


def passkey_methods_findings(name: str, t: pd.DataFrame, L: int) -> list[dict]:
    """Finding 8c on one table of kind passkey: YaRN's and PI's step 0 at their window L' against the base model's
    k_max at L (none when the table has no YaRN row at step 0)."""
    out = []
    none = t[(t["method"] == "None") & (t["window"] == L)]
    for _, row in t[(t["method"] == "YaRN") & (t["window"] == t["model_ctx"])].iterrows():
        size, ctx = str(row["size"]), int(row["model_ctx"])
        y0 = _steps(row).get(0)
        pi = t[(t["method"] == "PI") & (t["model_ctx"] == ctx) & (t["window"] == ctx) & (t["size"].astype(str) == size)]
        p0 = _steps(pi.iloc[0]).get(0) if not pi.empty else None
        base = none[none["size"].astype(str) == size]
        b = _steps(base.iloc[0]).get(0) if not base.empty else None
        ok = None if None in (y0, p0, b) else (y0 >= b and p0 < b)
        out.append(result("8c", f"{name} {size} L'={ctx}", "without fine-tuning, YaRN keeps passkey retrieval inside L "
                          "(k_max at L' >= the base model's at L) where PI loses it (below it) (YaRN paper)", ok,
                          {f"YaRN-{ctx} step0 k_max": y0, f"PI-{ctx} step0 k_max": p0, f"None@{L} k_max": b},
                          reason=None if ok is not None else "no step 0 of YaRN and PI at L' and no base row at L"))
    return out


def _steps(row) -> dict:
    return {int(c): (None if pd.isna(row[c]) else int(row[c])) for c in row.index if str(c).isdigit()}


def passkey_findings(name: str, t: pd.DataFrame, L: int, reads: dict) -> list[dict]:
    """Finding 4 on one table of kind passkey: each PI and FT row at its own window after its last fine-tuning
    step, each base-model row at a window beyond L."""
    out = []
    for _, row in t.iterrows():
        size, method, ctx, window, top = str(row["size"]), row["method"], int(row["model_ctx"]), int(row["window"]), \
            int(row["k_top"])
        steps = _steps(row)
        tuned = {s: v for s, v in steps.items() if s > 0 and v is not None}
        last = tuned[max(tuned)] if tuned else None
        nums = {f"k_max step {s}": v for s, v in steps.items() if v is not None} | {"largest k tested": top, "L": L}
        mix = row.get("mixture", "-")
        where = f"{name} {size} {method}-{ctx}" + (f" fine-tuned on {mix}" if mix != "-" else "") + f" window {window}"
        if method == "PI" and window == ctx:
            out.append(result("4a", where, "after fine-tuning, PI's k_max reaches its window L' (the largest k "
                               "tested)", None if last is None else last >= top, nums,
                               reason=None if tuned else "no fine-tuned step in this row"))
        elif method == "FT" and window == ctx:
            out.append(result("4b", where, f"after fine-tuning, FT's k_max does not extend past about L: below its "
                               f"window L' and at most {NEAR_L:g} x L",
                               None if last is None else (last < top and last <= NEAR_L * L),
                               nums, reason=None if tuned else "no fine-tuned step in this row"))
        elif method == "None" and window > L:
            out.append(result("4c", where, "without fine-tuning, the base model's k_max does not pass L",
                               steps[0] <= L, nums))
    for fid, what in (("4a", "PI at its own window"), ("4b", "FT at its own window"), ("4c", "base model past L")):
        if not any(r["finding"] == fid for r in out):
            out.append(result(fid, name, reads[fid], None, {}, reason=f"the table has no row of {what}"))
    return out


def ruler_findings(name: str, t: pd.DataFrame, L: int, reads: dict) -> list[dict]:
    """Finding 9 on one table of kind ruler: each PI row's effective length passes L (RULER's threshold: the
    table's, else the base model's mean at L)."""
    out = []
    lengths = [c for c in t.columns if c.isdigit()]
    for _, row in t[(t["method"] == "PI") & (t["task"] == "mean")].iterrows():
        tag = "" if row["tag"] == "-" else f"-{row['tag']}"
        where = f"{name} {row['size']} PI-{int(row['model_ctx'])}{tag} step {int(row['step'])}"
        nums = {f"mean@{c}": row[c] for c in lengths if pd.notna(row[c])} | {"L": L}
        eff = row["effective"]
        if pd.isna(eff):
            out.append(result("9", where, reads["9"], None, nums, reason="no threshold: the table gives none and the "
                              "base model's mean at L is missing or 0"))
            continue
        out.append(result("9", where, reads["9"], int(eff) > L, nums | {"effective length": int(eff)}))
    if not out:
        out.append(result("9", name, reads["9"], None, {}, reason="the table has no PI row"))
    return out


def benchmarks_findings(name: str, t: pd.DataFrame, reads: dict) -> list[dict]:
    """Finding 5 on one table of kind benchmarks: each PI row's mean accuracy change from None over the tasks."""
    tasks = [c for c in t.columns if f"{c} stderr" in t.columns]
    out = []
    for size in dict.fromkeys(t["size"].astype(str)):
        rows = t[t["size"].astype(str) == size]
        none = rows[rows["method"] == "None"]
        if none.empty:
            out.append(result("5", f"{name} {size}", reads["5"], None, {},
                               reason="no base-model (None) row to compare with"))
            continue

        def change(r, base=none.iloc[0]):
            return sum(r[c] - base[c] for c in tasks) / len(tasks)

        ct = rows[rows["method"] == "CT"]
        control = {f"CT-{int(r['model_ctx'])} mean change": change(r) for _, r in ct.iterrows()}
        pi = rows[rows["method"] == "PI"]
        for data, group in pi.groupby("finetune_data", sort=False):
            group = group.sort_values("model_ctx")
            changes = {int(r["model_ctx"]): change(r) for _, r in group.iterrows()}
            per_task = {f"PI-{int(r['model_ctx'])} {c}": r[c] - none.iloc[0][c] for _, r in group.iterrows()
                        for c in tasks}
            nums = {f"PI-{c} mean change": v for c, v in changes.items()} | control | per_task
            first = min(changes)
            out.append(result("5a", f"{name} {size} PI-{first} ({data})", f"PI at its smallest extension keeps its "
                               f"quality at the original window: mean change from None within {SMALL_CHANGE:g} "
                               "points", changes[first] >= -SMALL_CHANGE, nums))
            if len(changes) > 1:
                seq = [changes[c] for c in sorted(changes)]
                out.append(result("5b", f"{name} {size} PI ({data})", "the loss at the original window grows with "
                                   "the extension (mean change falls as L' grows)",
                                   all(b <= a for a, b in zip(seq, seq[1:])), nums))
    if not out:
        out.append(result("5", name, reads["5"], None, {}, reason="the table has no PI row"))
    return out


def summarization_findings(name: str, t: pd.DataFrame, reads: dict) -> list[dict]:
    """Finding 7 on one table of kind summarization: each PI row against the base model of its size."""
    ours = t[t["source"] == RUN] if "source" in t.columns else t
    labels = tuple(ROUGE_LABELS.values())
    lead = ours[ours["method"] == "LEAD"]
    out = []
    for _, row in ours[ours["method"] == "PI"].iterrows():
        size, ctx = str(row["size"]), int(row["model_ctx"])
        rows = ours[ours["size"].astype(str) == size]
        none, ct = rows[rows["method"] == "None"], rows[rows["method"] == "CT"]
        where = f"{name} {size} PI-{ctx}"
        if none.empty:
            out.append(result("7", where, reads["7"], None, {}, reason="no base-model (None) row of this size"))
            continue
        nums = {f"PI-{ctx} {c}": row[c] for c in labels} | {f"None {c}": none.iloc[0][c] for c in labels}
        nums |= {f"PI-{ctx} - None {c} (95% CI {row[c + ' vs None lo']:+.2f}, {row[c + ' vs None hi']:+.2f})":
                 row[f"{c} vs None"] for c in labels}
        nums |= {f"CT-{int(r['model_ctx'])} - None {c}": r[f"{c} vs None"] for _, r in ct.iterrows() for c in labels}
        nums |= {f"LEAD {c}": lead.iloc[0][c] for c in labels} if not lead.empty else {}
        out.append(result("7", where, f"the extended model (PI at L' = {ctx}, the document up to L') summarizes at "
                           f"least as well as the base model at L = {int(none.iloc[0]['window'])} (document cut to "
                           "L), both fine-tuned the same way: ROUGE-1/2/L differences >= 0",
                           all(row[f"{c} vs None"] >= 0 for c in labels), nums))
    if not out:
        out.append(result("7", name, reads["7"], None, {}, reason="the table has no PI row"))
    return out


def theory_findings(t: dict) -> list[dict]:
    """Finding 6 on Figure 2's numbers (rule figure2)."""
    where = f"Figure 2 (d = {t['d']}, L = {t['window']})"
    return [
        result("6a", where, "the least-squares fit stays within [-1, 1] on [0, L] and exceeds 10^3 beyond L",
                t["max_abs_inside"] <= 1 and t["max_abs_beyond"] > 1e3,
                {"max |a| on [0, L]": t["max_abs_inside"], "max |a| on [L, 2L]": t["max_abs_beyond"]}),
        result("6b", where, "Theorem 2.1: |a(s) - a_linear(s)| <= d max|h| (s-s1)(s2-s)/(8 ln c) at every "
                "fractional point tested (the fit and random h)",
                max(t["thm21_worst_ratio_fit"], t["thm21_worst_ratio_random"]) <= 1,
                {"worst deviation / bound, fit": t["thm21_worst_ratio_fit"],
                 "worst deviation / bound, random h": t["thm21_worst_ratio_random"]}),
        result("6c", where, "the extrapolation bound is hundreds of times the interpolation bound on the integer "
                "grid (paper: about 600x)", t["extrapolation_over_interpolation_bound"] >= 300,
                {"ratio": t["extrapolation_over_interpolation_bound"],
                 "min B(s)/d beyond L": t["B_over_d_min_beyond"]}),
    ]


def result(fid, where, claim, ok, numbers, reason=None) -> dict:
    r = {"finding": fid, "where": where, "claim": claim, "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
         "numbers": dict(numbers)}
    if reason:
        r["reason"] = reason
    return r


def to_markdown(results: list[dict]) -> str:
    lines = ["# Findings of the paper, checked on this run", "",
             "| finding | where | claim | status | numbers |", "|---|---|---|---|---|"]
    for r in results:
        nums = "; ".join(filter(None, [", ".join(f"{k} = {_fmt(v)}" for k, v in r["numbers"].items()),
                                       r.get("reason")]))
        cells = [r["finding"], r["where"], r["claim"], f"**{r['status']}**", nums]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a "|" inside is text
    passed = sum(r["status"] == "PASS" for r in results)
    failed = sum(r["status"] == "FAIL" for r in results)
    lines += ["", f"{passed} passed, {failed} failed, {len(results) - passed - failed} not applicable."]
    return "\n".join(lines) + "\n"
