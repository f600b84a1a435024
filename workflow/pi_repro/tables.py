"""Table layouts (the paper's), from evaluation records that carry their own coordinates (pi_repro.kinds says
which layout each table kind uses)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import atomic_path, read_json
from .methods import METHODS, NONE_ORDER

def method_order() -> dict[str, int]:
    """Each method's place in a table (pi_repro.methods), the base model ("None") first."""
    return {"None": NONE_ORDER} | {n: m.order for n, m in METHODS.items()}


def method_label() -> dict[str, str]:
    """Each method's label in tables and figures (pi_repro.methods)."""
    return {"None": "None"} | {n: m.label for n, m in METHODS.items()}


def cells_frame(records: list[dict], only_model_window: bool = False) -> pd.DataFrame:
    """One row per (checkpoint, window) of perplexity records, with the coordinates each record carries;
    ``only_model_window``: just each model's own window (Table 3)."""
    rows = []
    for rec in records:
        model = {k: rec[k] for k in ("dataset", "size", "method", "ctx", "step")}
        for w, r in rec["windows"].items():
            if only_model_window and int(w) != model["ctx"]:
                continue
            rows.append(dict(model, window=int(w), perplexity=r["perplexity"], ci_low=r["ci95"][0],
                             ci_high=r["ci95"][1], n_tokens=r["n_scored_tokens"], n_docs=r["n_docs"],
                             **({"past": r["past"]["position"], "past_perplexity": r["past"]["perplexity"]}
                                if r.get("past") else {})))
    if not rows:
        raise ValueError("no perplexity records given")
    return pd.DataFrame(rows)


def load_records(paths: list[str | Path]) -> list[dict]:
    """Evaluation records, each verified against what its job recorded writing (``provenance.check_read``)."""
    from .provenance import check_read

    check_read(paths, "lay out")
    return [read_json(p) for p in paths]


def _row_order(df: pd.DataFrame, then: list[str] = ()) -> pd.DataFrame:
    """Sizes in the order they come, then model window, then the paper's method order, then ``then``."""
    sizes = list(dict.fromkeys(df["size"]))
    key = df["size"].map(sizes.index) * 10**9 + df["ctx"] * 10 + df["method"].map(method_order())
    return df.assign(_k=key).sort_values(["_k", *then], kind="stable").drop(columns="_k")


def _one_record_each(df: pd.DataFrame, keys: list[str], what: str, unit: str = "cell") -> None:
    """A cell (or row) given by more than one record is a ``ValueError`` naming it: never an average."""
    dup = df[df.duplicated(keys, keep=False)]
    if not dup.empty:
        first = {k: (v.item() if hasattr(v, "item") else v) for k, v in dup.iloc[0][keys].items()}
        raise ValueError(f"{len(dup)} {what} records for the {unit} {first}: give each {unit} one record")


def _wide(cells: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (size, model window, method), one column per value of ``column``; one record per cell."""
    _one_record_each(cells, ["size", "ctx", "method", column], "perplexity")
    wide = cells.pivot_table(index=["size", "ctx", "method"], columns=column, values="perplexity", sort=False)
    wide = _row_order(wide[sorted(wide.columns)].reset_index())
    wide.columns = [str(c) for c in wide.columns]
    return wide.rename(columns={"ctx": "model_ctx"})


def windows_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Tables 1-2: one row per (size, model window, method), one column per evaluation window; where the records
    report the tokens past a position P (``perplexity.past``), also one column "W, pos >= P" per window W."""
    wide = _wide(cells, "window")
    if "past_perplexity" not in cells or cells["past_perplexity"].isna().all():
        return wide
    p = int(cells["past"].dropna().iloc[0])
    past = _wide(cells.drop(columns="perplexity").rename(columns={"past_perplexity": "perplexity"}), "window")
    past = past.rename(columns={c: f"{c}, pos >= {p}" for c in past.columns if c.isdigit()})
    return wide.merge(past, on=["size", "model_ctx", "method"], sort=False)


def steps_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Table 3: one row per (size, model window), one column per fine-tuning step, at the model's window."""
    return _wide(cells, "step")


def record_mixture(rec: dict) -> str:
    """The fine-tuning data mixture of a record's model (targets.mixture_name): '-' for a model that was not
    fine-tuned (the base model, PI with steps: 0); records written before mixtures existed read as corpus."""
    if rec["method"] == "None":
        return "-"
    return rec.get("mixture", "corpus") or "-"


def passkey_table(records: list[dict]) -> pd.DataFrame:
    """Table 4: one row per (size, model window, method, fine-tuning data mixture, window k spans), its largest
    k tested, one column per fine-tuning step: k_max."""
    rows = []
    for rec in records:
        for w, r in rec["windows"].items():
            rows.append({"size": rec["size"], "ctx": rec["ctx"], "method": rec["method"],
                         "mixture": record_mixture(rec), "window": int(w), "k_top": r["k_top"], "step": rec["step"],
                         "k_max": r["k_max"]})
    if not rows:
        raise ValueError("no passkey records given")
    cells = pd.DataFrame(rows)
    _one_record_each(cells, ["size", "ctx", "method", "mixture", "window", "step"], "passkey")
    wide = cells.pivot_table(index=["size", "ctx", "method", "mixture", "window", "k_top"], columns="step",
                             values="k_max", sort=False)
    wide = _row_order(wide[sorted(wide.columns)].reset_index(), then=["mixture", "window"])
    wide.columns = [str(c) for c in wide.columns]
    return wide.rename(columns={"ctx": "model_ctx"})


def record_model(rec: dict) -> str:
    """The checkpoint a record is of, as the DAG names it: ``base`` or ``{method}-{ctx}[-{tag}]/step{N}``."""
    if rec["method"] == "None":
        return "base"
    return f"{rec['method']}-{rec['ctx']}" + (f"-{rec['tag']}" if rec.get("tag") else "") + f"/step{rec['step']}"


def passkey_accuracy_table(records: list[dict], cells: list | None = None) -> pd.DataFrame:
    """Passkey retrieval accuracy: one row per (size, model window, method, fine-tuning data mixture, step), per
    window W the fraction of its prompts retrieved (every k, every trial: column "W"), its 95% Wilson interval
    ("W lo", "W hi") and the prompts counted ("W n"). ``cells``: the table's own (size, model, window), if given
    (a record holds every window any table asks of its checkpoint)."""
    from .passkey import wilson

    own = None if cells is None else {tuple(c) for c in cells}
    rows = []
    for rec in records:
        for w, r in rec["windows"].items():
            if own is not None and (rec["size"], record_model(rec), int(w)) not in own:
                continue
            hits, n = sum(p["correct"] for p in r["per_k"]), sum(p["trials"] for p in r["per_k"])
            if not n:
                raise ValueError(f"the passkey record of {rec['size']} {record_model(rec)} has no trials at {w}")
            lo, hi = wilson(hits, n)
            rows.append({"size": rec["size"], "ctx": rec["ctx"], "method": rec["method"],
                         "mixture": record_mixture(rec), "step": rec["step"], "window": int(w), "acc": hits / n,
                         "lo": lo, "hi": hi, "n": n})
    if not rows:
        raise ValueError("no passkey records given")
    cells_df = pd.DataFrame(rows)
    key = ["size", "ctx", "method", "mixture", "step"]
    _one_record_each(cells_df, key + ["window"], "passkey")
    out = cells_df[key].drop_duplicates().reset_index(drop=True)
    for w in sorted(cells_df["window"].unique()):
        at = {tuple(r[key]): r for _, r in cells_df[cells_df["window"] == w].iterrows()}
        found = [at.get(tuple(r)) for r in out[key].itertuples(index=False)]
        for col, suffix in (("acc", ""), ("lo", " lo"), ("hi", " hi")):
            out[f"{w}{suffix}"] = [float("nan") if f is None else float(f[col]) for f in found]
        out[f"{w} n"] = pd.array([None if f is None else int(f["n"]) for f in found], dtype="Int64")
    out = _row_order(out, then=["mixture", "step"]).reset_index(drop=True)
    return out.rename(columns={"ctx": "model_ctx"})


def passkey_accuracy_display(df: pd.DataFrame) -> pd.DataFrame:
    """The accuracy table as shown: each window's accuracy with its Wilson interval, "0.94 [0.84, 0.98]"."""
    out = df[["size", "model_ctx", "method", "mixture"]].copy()
    out["method"] = out["method"].map(lambda m: method_label().get(m, m))
    out["Step"] = [str(int(s)) for s in df["step"]]
    for c in df.columns:
        if c.isdigit():
            out[c] = ["-" if pd.isna(a) else f"{a:.2f} [{lo:.2f}, {hi:.2f}]"
                      for a, lo, hi in zip(df[c], df[f"{c} lo"], df[f"{c} hi"])]
    return out.rename(columns=LABELS)


def ruler_threshold(cells: pd.DataFrame, size: str, L: int, threshold: float | None) -> float | None:
    """The effective-length threshold of a size's rows: the table's own, else the base model's mean at L (None
    when the table has no such cell)."""
    if threshold is not None:
        return float(threshold)
    base = cells[(cells["size"] == size) & (cells["method"] == "None") & (cells["length"] == L)
                 & (cells["task"] == "mean")]
    return float(base["score"].iloc[0]) if len(base) else None


def ruler_table(records: list[dict], base_window: int, threshold: float | None = None,
                quoted: list[dict] | None = None) -> pd.DataFrame:
    """RULER: per model (size, model window, method, tag, step) and task (their mean first), the score (0-100) at each
    length, and per model its effective length: the largest length whose mean is at or above the threshold, every
    shorter length too (pi_repro.ruler.effective_length; the table's ``threshold``, else the base model's mean at
    L; '-' where there is none, or where it is 0: a model that scores nothing at L sets no bar)."""
    from .ruler import effective_length

    rows = []
    for rec in records:
        for length, r in rec["lengths"].items():
            base = {"size": rec["size"], "ctx": rec["ctx"], "method": rec["method"], "tag": rec.get("tag") or "-",
                    "step": rec["step"], "length": int(length)}
            rows.append({**base, "task": "mean", "score": r["mean"]})
            rows += [{**base, "task": name, "score": t["score"]} for name, t in r["tasks"].items()]
    if not rows:
        raise ValueError("no ruler records given")
    cells = pd.DataFrame(rows)
    _one_record_each(cells, ["size", "ctx", "method", "tag", "step", "task", "length"], "ruler")
    wide = cells.pivot_table(index=["size", "ctx", "method", "tag", "step", "task"], columns="length",
                             values="score", sort=False)
    wide = _row_order(wide[sorted(wide.columns)].reset_index(), then=["tag", "step"])
    bars = {size: ruler_threshold(cells, size, base_window, threshold) for size in wide["size"].unique()}
    lengths = [c for c in wide.columns if isinstance(c, int)]
    effective = [effective_length({c: row[c] for c in lengths if pd.notna(row[c])}, bars[row["size"]])
                 if row["task"] == "mean" and bars[row["size"]] else None for _, row in wide.iterrows()]
    wide["effective"] = pd.array(effective, dtype="Int64")
    wide["step"] = wide["step"].astype("Int64")
    if quoted:  # another model's published means (pi_repro.paper.other_work): shown after ours, never judged
        extra = pd.DataFrame([{"size": c["size"], "ctx": c["model_ctx"], "method": c["method"], "tag": "-",
                               "task": "mean", "length": int(c["column"]), "score": float(c["value"])}
                              for c in quoted])
        extra = extra.pivot_table(index=["size", "ctx", "method", "tag", "task"], columns="length", values="score",
                                  sort=False).reset_index()
        extra.insert(4, "step", pd.array([None] * len(extra), dtype="Int64"))
        extra["effective"] = pd.array([None] * len(extra), dtype="Int64")
        wide = pd.concat([wide, extra], ignore_index=True)
        lengths = sorted(c for c in wide.columns if isinstance(c, int))
        wide = wide[["size", "ctx", "method", "tag", "step", "task", *lengths, "effective"]]
    wide.columns = [str(c) for c in wide.columns]
    return wide.rename(columns={"ctx": "model_ctx"})


def ruler_display(df: pd.DataFrame) -> pd.DataFrame:
    """RULER's table as shown: scores to one decimal, steps and effective lengths as integers ('-': none)."""
    def whole(values):
        return ["-" if pd.isna(v) else str(int(v)) for v in values]

    out = _display(df.drop(columns=["tag", "step", "task", "effective"]), "{:.1f}")
    out.insert(3, "Tag", list(df["tag"]))
    out.insert(4, "Step", whole(df["step"]))
    out.insert(5, "Task", list(df["task"]))
    out["Effective length"] = whole(df["effective"])
    return out


def benchmarks_table(records: list[dict], task_order: list[str] | None = None) -> pd.DataFrame:
    """Table 5: one row per model (size, model window, method, fine-tuning data), per task its accuracy and the
    harness's standard error, in percent (the paper's unit); tasks in ``task_order`` (the config's order), else in
    the records' own."""
    rows = []
    for rec in records:
        row = {"size": rec["size"], "ctx": rec["ctx"], "method": rec["method"],
               "finetune_data": "+".join(rec.get("finetune_data") or []) or "None"}
        for name in task_order or rec["task_order"]:
            if name not in rec["tasks"]:
                raise ValueError(f"the benchmark record of {rec['size']} {rec['method']}-{rec['ctx']} has no task "
                                 f"{name!r} (it has "
                                 f"{', '.join(rec['tasks'])}): rerun its benchmark job")
            t = rec["tasks"][name]
            row[t["label"]] = 100 * t["acc"]
            row[f"{t['label']} stderr"] = 100 * t["acc_stderr"]
        rows.append(row)
    if not rows:
        raise ValueError("no benchmark records given")
    df = pd.DataFrame(rows)
    _one_record_each(df, ["size", "ctx", "method", "finetune_data"], "benchmark", unit="row")
    return _row_order(df, then=["finetune_data"]).rename(columns={"ctx": "model_ctx"}).reset_index(drop=True)


def benchmarks_display(df: pd.DataFrame) -> pd.DataFrame:
    """Table 5 as printed: accuracy ± standard error, one column per task."""
    out = df[["size", "model_ctx", "method", "finetune_data"]].copy()
    out["method"] = out["method"].map(method_label())
    for c in df.columns:
        if c.endswith(" stderr") or c in out.columns:
            continue
        out[c] = [f"{a:.1f} ± {e:.1f}" for a, e in zip(df[c], df[f"{c} stderr"])]
    return out.rename(columns=LABELS)


RUN, QUOTED = "this run", "quoted (paper)"  # Table 6's `source`: our rows, and the paper's rows it quotes


def summarization_table(records: list[dict], quoted: list[dict] | None = None, seed: int = 0) -> pd.DataFrame:
    """Table 6: one row per model (size, model window, method, the window it summarized at) and the LEAD
    baseline's, ROUGE-1/2/L in points; each model's paired difference from the base model (None) of its size over
    the same documents with its 95% bootstrap interval; then the ``quoted`` paper cells of this table as rows
    marked quoted."""
    from .summarization import ROUGE_LABELS, paired_bootstrap

    rows, per_doc = [], {}
    for rec in records:
        lead = rec.get("baseline") == "LEAD"
        key = ("", 0, "LEAD") if lead else (rec["size"], rec["ctx"], rec["method"])
        row = {"size": key[0], "ctx": key[1], "method": key[2], "window": rec.get("window") or 0,
               **{ROUGE_LABELS[t]: v for t, v in rec["scores"].items()}, "n_docs": rec["n_docs"], "source": RUN}
        rows.append(row)
        per_doc[key] = {d["id"]: d for d in rec["per_doc"]}
    if not rows:
        raise ValueError("no ROUGE records given")
    df = pd.DataFrame(rows)
    _one_record_each(df, ["size", "ctx", "method"], "ROUGE", unit="row")
    n_boot = next((r.get("bootstrap") for r in records if r.get("bootstrap")), 1000)
    delta = {label: [f"{label} vs None", f"{label} vs None lo", f"{label} vs None hi"]
             for label in ROUGE_LABELS.values()}
    for cols in delta.values():
        for col in cols:
            df[col] = float("nan")
    for i, row in df.iterrows():
        base = per_doc.get((row["size"], _base_ctx(df, row["size"]), "None"))
        if row["method"] in ("None", "LEAD") or base is None:
            continue
        mine = per_doc[(row["size"], row["ctx"], row["method"])]
        ids = sorted(set(mine) & set(base))
        if len(ids) != len(mine) or len(ids) != len(base):
            raise ValueError(f"{row['method']}-{row['ctx']} and None of {row['size']} scored different documents")
        for t, label in ROUGE_LABELS.items():
            b = paired_bootstrap([100 * mine[k][t] for k in ids], [100 * base[k][t] for k in ids], n_boot, seed)
            df.loc[i, delta[label]] = [b["mean"], *b["ci95"]]
    lead_rows = df[df["method"] == "LEAD"]
    df = pd.concat([_row_order(df[df["method"] != "LEAD"]), lead_rows])
    if quoted:
        q = {}
        for c in quoted:
            k = (c["size"], c["model_ctx"], c["method"])
            q.setdefault(k, {"size": c["size"], "ctx": c["model_ctx"], "method": c["method"], "window": c["model_ctx"],
                             "source": QUOTED})[c["column"]] = float(c["value"])
        df = pd.concat([df, pd.DataFrame(list(q.values()))], ignore_index=True)
    return df.rename(columns={"ctx": "model_ctx"}).reset_index(drop=True)


def _base_ctx(df: pd.DataFrame, size: str):
    hit = df[(df["size"] == size) & (df["method"] == "None")]
    return hit.iloc[0]["ctx"] if len(hit) else None


def summarization_display(df: pd.DataFrame) -> pd.DataFrame:
    """Table 6 as printed: Model, Window, ROUGE-1/2/L (one decimal), ROUGE-L's paired difference from None with its
    interval, and where the row comes from."""
    from .summarization import ROUGE_LABELS

    def model(r):
        if r["method"] == "LEAD":
            return "LEAD (first sentence)"
        if r["method"] not in method_label():  # another work the paper quotes
            return f"{r['method']} {r['size']}"
        ctx = "" if r["method"] == "None" else f" ({int(r['model_ctx'])})"
        return f"{r['size']} {method_label()[r['method']]}" + ctx

    def num(v):
        return "-" if pd.isna(v) else f"{v:.1f}"

    out = pd.DataFrame({"Model": [model(r) for _, r in df.iterrows()],
                        "Window": ["-" if pd.isna(w) or not w else str(int(w)) for w in df["window"]]})
    for label in ROUGE_LABELS.values():
        out[label] = [num(v) for v in df[label]]
    out["ROUGE-L vs None (95% CI)"] = ["-" if pd.isna(m) else f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" for m, lo, hi in
                                       zip(df["ROUGE-L vs None"], df["ROUGE-L vs None lo"], df["ROUGE-L vs None hi"])]
    out["Source"] = list(df["source"])
    return out


LABELS = {"size": "Size", "model_ctx": "Model ctx", "method": "Method", "window": "Window", "k_top": "Largest k",
          "finetune_data": "Fine-tune on", "mixture": "Fine-tuning data"}


def _display(df: pd.DataFrame, fmt: str = "{:.2f}") -> pd.DataFrame:
    """Labels of the paper; values as ``fmt`` ('-' where there is no cell) in every column but the row keys."""
    out = df.copy()
    labels = method_label()
    out["method"] = out["method"].map(lambda m: labels.get(m, m))  # a quoted row names another work's model
    for c in out.columns:
        if c not in LABELS:
            out[c] = out[c].map(lambda v: "-" if pd.isna(v) else fmt.format(v))
    return out.rename(columns=LABELS)


def write_table(df: pd.DataFrame, title: str, note: str, md: str | Path, csv: str | Path, tex: str | Path,
                fmt: str = "{:.2f}", disp: pd.DataFrame | None = None) -> None:
    """CSV (full precision: every float reads back exactly), Markdown and LaTeX (``disp`` if given, else values as
    ``fmt``, '-' where the paper has no cell)."""
    disp = _display(df, fmt) if disp is None else disp
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    text = f"# {title}\n\n" + (note + "\n\n" if note else "") + markdown(disp) + "\n"
    with atomic_path(md) as tmp:
        tmp.write_text(text)
    latex = disp.to_latex(index=False, caption=title, escape=True)
    with atomic_path(tex) as tmp:
        tmp.write_text(latex)


def markdown(disp: pd.DataFrame) -> str:
    """A display frame as a Markdown table, cells exactly as formatted (no re-parsing of "24.0" into "24"),
    columns of numbers right-aligned."""
    import re

    def numeric(col):
        return all(re.fullmatch(r"[-+]?\d+(\.\d+)?|-", str(v)) for v in disp[col])

    return disp.to_markdown(index=False, disable_numparse=True,
                            colalign=["right" if numeric(c) else "left" for c in disp.columns])


def read_table(path: str | Path) -> pd.DataFrame:
    # the method "None" (no fine-tuning) must stay a string, not become a missing value
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def value(table: pd.DataFrame, size: str, method: str, column: int | str, ctx: int | None = None) -> float | None:
    """One cell of a table (None if absent): the row of (size, method[, ctx]), the column ``column``."""
    rows = table[(table["size"].astype(str) == str(size)) & (table["method"] == method)]
    if ctx is not None:
        rows = rows[rows["model_ctx"] == ctx]
    col = str(column)
    if rows.empty or col not in rows.columns or pd.isna(rows.iloc[0][col]):
        return None
    return float(rows.iloc[0][col])
