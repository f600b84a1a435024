"""The paper's published cells (resources/paper/tables.csv) beside a run's tables: which reproduced cell each
paper cell corresponds to, the difference, and pass / fail against the table's tolerance.

A paper cell is (table, size, model_ctx, method, finetune_data, column, value): ``column`` is the table's column
as our tables name it (evaluation window for Tables 1-2, fine-tuning step for Tables 3-4, the task's label for
Table 5); ``value`` is the printed number, or ``>1000`` for the paper's ">10^3".
"""
from __future__ import annotations

import csv
from pathlib import Path

from . import METHODS
from .kinds import KINDS
from .tables import RUN

def other_work(cell: dict) -> bool:
    """A cell of another work the paper quotes (Table 6's CoLT5 rows): shown beside ours, never reproduced."""
    return cell["method"] != "None" and cell["method"] not in METHODS


def load_cells(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["model_ctx"] = int(r["model_ctx"])
        r["finetune_data"] = r.get("finetune_data") or None
    return rows


def tolerance(cfg: dict, table: str) -> dict:
    spec = cfg["tables"][table]
    return spec.get("tolerance") or KINDS[spec["kind"]].tolerance


def _extension(cfg: dict, cell: dict) -> dict | None:
    """The config's extension a paper row names (its fine-tuning data tells the RedPajama variant apart)."""
    for e in cfg["extensions"]:
        data = "+".join(e.get("data", cfg["finetune_data"]))
        if (e["size"], e["method"], e["ctx"]) == (cell["size"], cell["method"], cell["model_ctx"]) and \
                (cell["finetune_data"] is None and not e.get("tag") or cell["finetune_data"] == data):
            return e
    return None


def planned_cell(cfg: dict, cell: dict) -> tuple | None:
    """The (task, dataset, size, model, window) the config evaluates for a paper cell (None if it evaluates no such
    checkpoint), from the table's kind; kinds with several columns per record add the column's label."""
    spec = cfg["tables"].get(cell["table"])
    if spec is None:
        return None
    ext = None if cell["method"] == "None" else _extension(cfg, cell)
    if cell["method"] != "None" and ext is None:
        return None
    return KINDS[spec["kind"]].paper_cell(cfg, spec, cell, ext)


def counterparts(cfg: dict, cells: list[dict]) -> dict[int, int]:
    """For each paper cell (by index), how many cells of the run's plan stand for it (1 = reproduced)."""
    planned = {}
    for table, spec in cfg["tables"].items():
        kind = KINDS[spec["kind"]]
        keys, labels = kind.cells(cfg, spec), kind.paper_columns(cfg)
        planned[table] = keys if labels is None else [k + (label,) for k in keys for label in labels]
    return {i: planned.get(c["table"], []).count(planned_cell(cfg, c)) for i, c in enumerate(cells)}


def reproduced(cfg: dict, cell: dict, frames: dict) -> float | None:
    """Our value of a paper cell from the run's table CSVs (``frames``: table name → DataFrame), None if absent."""
    df = frames.get(cell["table"])
    if df is None or cell["column"] not in df.columns:
        return None
    m = (df["size"].astype(str) == cell["size"]) & (df["model_ctx"] == cell["model_ctx"]) & \
        (df["method"].astype(str) == cell["method"])
    if "window" in df.columns:  # passkey: the paper reads each model at its own window
        m &= df["window"] == cell["model_ctx"]
    if "finetune_data" in df.columns:
        m &= df["finetune_data"].astype(str) == (cell["finetune_data"] or "None")
    if "source" in df.columns:  # a table showing the paper's rows beside ours (Table 6): ours only
        m &= df["source"] == RUN
    hit = df.loc[m, cell["column"]].dropna()
    return float(hit.iloc[0]) if len(hit) == 1 else None


def judge(paper: str, ours: float | None, tol: dict, model_ctx: int, num_k: int = 32) -> tuple[str, float | None]:
    """(PASS / FAIL / missing, the difference ours - paper)."""
    if ours is None:
        return "missing", None
    if paper.startswith(">"):
        return ("PASS" if ours > float(paper[1:]) else "FAIL"), None
    p = float(paper)
    diff = ours - p
    if "relative" in tol:
        ok = abs(diff) <= tol["relative"] * abs(p)
    elif "grid_steps" in tol:
        ok = abs(diff) <= tol["grid_steps"] * model_ctx / num_k
    else:
        ok = abs(diff) <= tol["absolute"]
    return ("PASS" if ok else "FAIL"), diff


def side_by_side(cfg: dict, cells: list[dict], table_csvs: dict[str, str]) -> list[dict]:
    """Every paper cell beside ours: value, difference, tolerance, status (missing when the run has no such cell),
    and, from a kind with its own rule (``Kind.judge``), why it passed or failed."""
    from .tables import read_table

    frames = {}
    for t, p in table_csvs.items():
        df = read_table(p)
        df.columns = [str(c) for c in df.columns]
        frames[t] = df
    num_k = cfg.get("passkey", {}).get("num_k", 32)
    out = []
    for c in cells:
        if other_work(c):  # quoted in the table, not ours to reproduce
            continue
        if c["table"] not in cfg["tables"]:
            out.append({**c, "ours": None, "diff": None, "tolerance": None, "status": "missing"})
            continue
        tol = tolerance(cfg, c["table"])
        spec = cfg["tables"][c["table"]]
        ext = None if c["method"] == "None" else _extension(cfg, c)
        own = KINDS[spec["kind"]].judge(cfg, spec, c, ext, frames.get(c["table"]), tol)
        if own is not None:  # a kind with its own rule (passkey_accuracy: binomial counts on both sides)
            out.append({**c, "tolerance": tol, **own})
            continue
        ours = reproduced(cfg, c, frames)
        status, diff = judge(c["value"], ours, tol, c["model_ctx"], num_k)
        out.append({**c, "ours": ours, "diff": diff, "tolerance": tol, "status": status})
    return out
