#!/usr/bin/env python3
"""Perplexity vs evaluation window, one line per model, one panel per dataset (rule figure_ppl_vs_window)."""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import _common  # noqa: E402
from pi_repro import tables  # noqa: E402
from pi_repro.methods import METHODS  # noqa: E402

STYLE = {"None": ("black", "o")} | {n: m.style for n, m in METHODS.items()}  # pi_repro.methods


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("records", nargs="+")
    a = ap.parse_args()
    cells = tables.cells_frame(tables.load_records(a.records))
    datasets = list(dict.fromkeys(cells["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    base_window = int(cells[cells["method"] == "None"]["ctx"].min()) if (cells["method"] == "None").any() else None
    for ax, ds in zip(axes[0], datasets):
        sub = cells[cells["dataset"] == ds]
        for (size, method, ctx), g in sub.groupby(["size", "method", "ctx"], sort=False):
            g = g.sort_values("window")
            color, marker = STYLE.get(method, ("tab:green", "d"))
            alpha = 0.5 + 0.5 * (ctx / sub["ctx"].max())
            label = f"{size} {tables.method_label()[method]}" + ("" if method == "None" else f" L'={ctx}")
            ax.plot(g["window"], g["perplexity"], marker=marker, color=color, alpha=alpha, label=label)
            ax.fill_between(g["window"], g["ci_low"], g["ci_high"], color=color, alpha=0.05)
        if base_window:
            ax.axvline(base_window, ls="--", color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluation window (tokens)")
        ax.set_ylabel("perplexity (sliding window)")
        ax.set_title(ds)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    _common.save_figure(fig, a.out, dpi=120)


if __name__ == "__main__":
    main()
