#!/usr/bin/env python3
"""Passkey accuracy against k, one panel per model and window, one line per fine-tuning step, with the Wilson 95%
interval as a band (rule figure_passkey)."""
import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import _common  # noqa: E402
from pi_repro import tables  # noqa: E402


def panels(records: list[dict]) -> dict:
    """(size, method, ctx, fine-tuning mixture, window) -> [(step, per-k rows, k_max)], in the table's row order."""
    out = {}
    for rec in sorted(records, key=lambda r: (tables.method_order()[r["method"]], r["ctx"], r["step"])):
        for w, r in rec["windows"].items():
            key = (rec["size"], rec["method"], rec["ctx"], tables.record_mixture(rec), int(w))
            out.setdefault(key, []).append((rec["step"], r["per_k"], r["k_max"]))
    return dict(sorted(out.items(), key=lambda kv: (tables.method_order()[kv[0][1]], kv[0][2], kv[0][3], kv[0][4])))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("records", nargs="+")
    a = ap.parse_args()
    records = tables.load_records(a.records)
    groups = panels(records)
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    mixtures = {k[3] for k in groups} - {"-"}
    for ax, ((size, method, ctx, mixture, window), lines) in zip(axes.flat, groups.items()):
        for i, (step, per_k, kmax) in enumerate(lines):
            color = cmap(i / max(1, len(lines) - 1)) if len(lines) > 1 else "tab:blue"
            ks = [r["k"] for r in per_k]
            ax.plot(ks, [r["accuracy"] for r in per_k], marker=".", color=color, label=f"step {step} (k_max {kmax})")
            ax.fill_between(ks, [r["ci95"][0] for r in per_k], [r["ci95"][1] for r in per_k], color=color, alpha=0.12)
        ax.axvline(a.base_window, ls="--", color="k", lw=0.8)
        ax.axhline(records[0]["protocol"]["threshold"], ls=":", color="tab:red", lw=0.8)
        name = tables.method_label()[method] + ("" if method == "None" else f" L'={ctx}")
        name += f" ({mixture})" if len(mixtures) > 1 and mixture != "-" else ""
        ax.set_title(f"{size} {name}, window {window}", fontsize=9)
        ax.set_xlabel("k (tokens from the needle to the end)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("retrieval accuracy")
    _common.save_figure(fig, a.out, dpi=110)


if __name__ == "__main__":
    main()
