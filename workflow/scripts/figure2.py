#!/usr/bin/env python3
"""The paper's Figure 2 (extrapolation vs interpolation of a RoPE attention score fitted by least squares) with
its Figure 5 (B(s)/d), and Theorem 2.1 checked numerically (rule figure2): figure + the numbers as JSON. The numbers
(what findings 6a-6c check) are ``pi_repro.theory.figure2_numbers``'s; this script reads its arguments, writes them and
plots."""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import _common  # noqa: E402
from pi_repro import theory as T  # noqa: E402
from pi_repro.io import write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--c", type=float, default=10000.0)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--points", type=int, default=2049)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-h", type=int, default=100, help="random coefficient vectors checked against Thm 2.1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    d, c, L = a.d, a.c, a.window
    curves = T.figure2_curves(d, c, L, a.points, a.seed)
    numbers = T.figure2_numbers(d, c, L, a.points, a.seed, a.random_h, curves=curves)
    f, h, grid, b_over_d = curves["fit"], curves["fit"]["h"], curves["grid"], curves["b_over_d"]
    inside_s, inside, beyond_s, beyond = curves["inside_s"], curves["inside"], curves["beyond_s"], curves["beyond"]
    for k, v in numbers.items():
        print(f"{k}: {v}")
    fig, ax = plt.subplots(1, 4, figsize=(20, 4))
    ax[0].plot(inside_s, inside, color="tab:red", lw=0.6, label="fitted a(s)")
    ax[0].scatter(f["s"][::8], f["y"][::8], s=3, color="k", label="random points (1 in 8)")
    ax[0].set_title(f"least-squares fit on [0, {L}] (d = {d})")
    ax[0].legend(fontsize=7)
    both = np.concatenate([inside_s, beyond_s])
    ax[1].plot(both, np.abs(np.concatenate([inside, beyond])), color="tab:red", lw=0.6)
    ax[1].axvline(L, ls="--", color="k", lw=0.8)
    ax[1].set_yscale("log")
    ax[1].set_title(f"extrapolation: |a(s)| beyond {L} reaches {np.abs(beyond).max():.3g}")
    zoom = np.linspace(L / 2, L / 2 + 10, 2001)
    ax[2].plot(zoom, T.score(h, zoom, c), color="tab:blue", lw=0.8)
    for x in range(int(L / 2), int(L / 2) + 11):
        ax[2].axvline(x, ls=":", color="gray", lw=0.6)
    ax[2].set_title("interpolation: between integer positions, smooth")
    ax[3].plot(grid, b_over_d, color="tab:green", lw=0.6)
    ax[3].axhline(1, ls=":", color="k", lw=0.8)
    ax[3].set_title(f"B(s)/d beyond L (Figure 5): min {b_over_d.min():.2f}")
    for x in ax:
        x.set_xlabel("relative position s")
        x.grid(alpha=0.3)
    ax[0].set_ylabel("attention score a(s)")
    _common.save_figure(fig, a.out, dpi=110)
    write_json(a.json, numbers)


if __name__ == "__main__":
    main()
