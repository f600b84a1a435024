#!/usr/bin/env python3
"""RULER's mean score against prompt length, one panel per size, one line per model, each model's effective length
marked; dashed: the base window L, dotted: the effective length's threshold (rule figure_ruler)."""
import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import _common  # noqa: E402
from pi_repro import tables  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--threshold", type=float, default=None, help="the tables' threshold (default: base mean at L)")
    ap.add_argument("records", nargs="+")
    a = ap.parse_args()
    records = tables.load_records(a.records)
    wide = tables.ruler_table(records, a.base_window, a.threshold)
    means = wide[wide["task"] == "mean"]
    lengths = [c for c in wide.columns if c.isdigit()]
    sizes = list(dict.fromkeys(means["size"]))
    cols = min(2, len(sizes))
    fig, axes = plt.subplots(math.ceil(len(sizes) / cols), cols, figsize=(6 * cols, 4), squeeze=False, sharey=True)
    cells = []
    for rec in records:  # the thresholds, as the table computes them
        cells += [{"size": rec["size"], "method": rec["method"], "ctx": rec["ctx"], "length": int(x),
                   "task": "mean", "score": r["mean"]} for x, r in rec["lengths"].items()]
    frame = pd.DataFrame(cells)
    for ax, size in zip(axes.flat, sizes):
        for _, row in means[means["size"] == size].iterrows():
            at = [(int(c), row[c]) for c in lengths if pd.notna(row[c])]
            base = row["method"] == "None"
            name = tables.method_label()[row["method"]]
            label = f"base (L={a.base_window})" if base else f"{name} L'={row['model_ctx']}"
            label += f" ({row['tag']})" if row["tag"] != "-" else ""
            label += "" if base else f", step {row['step']}"
            eff = row["effective"]
            line, = ax.plot([x for x, _ in at], [y for _, y in at], marker="o",
                            label=label + (f": effective {eff}" if pd.notna(eff) else ""))
            if pd.notna(eff) and eff:
                ax.plot([eff], [row[str(eff)]], marker="*", ms=14, color=line.get_color(), ls="none")
        bar = tables.ruler_threshold(frame, size, a.base_window, a.threshold)
        if bar:
            ax.axhline(bar, ls=":", color="tab:red", lw=0.9)
        ax.axvline(a.base_window, ls="--", color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(c) for c in lengths], labels=lengths, fontsize=7)
        ax.set_title(f"RULER, {size}", fontsize=10)
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(sizes):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean score over tasks (0-100)")
    _common.save_figure(fig, a.out, dpi=110)


if __name__ == "__main__":
    main()
