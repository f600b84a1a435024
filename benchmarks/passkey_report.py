#!/usr/bin/env python3
"""Per-k passkey accuracy of every passkey record of a run (Table 4 shows k_max only), as a Markdown table for
docs/calibration.md: one row per checkpoint and window, the correct answers out of the trials at each k.

    python benchmarks/passkey_report.py results/table4-regimes
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from pi_repro import tables  # noqa: E402
from pi_repro.io import read_json  # noqa: E402


def rows(run: Path) -> list[dict]:
    out = []
    for path in sorted(run.glob("eval/passkey/*/*/**/passkey.json")):
        rec = read_json(path)
        for w, r in rec["windows"].items():
            out.append({"model": f"{rec['size']} {rec['method']}" + ("" if rec["method"] == "None" else
                                                                     f"-{rec['ctx']}"),
                        "mixture": tables.record_mixture(rec), "step": rec["step"], "window": int(w),
                        "k_max": r["k_max"], "k_top": r["k_top"], "ks": [p["k"] for p in r["per_k"]],
                        "correct": [p["correct"] for p in r["per_k"]], "trials": r["per_k"][0]["trials"]})
    order = {"None": 0, "FT": 1, "PI": 2, "CT": 3}
    return sorted(out, key=lambda r: (order[r["model"].split()[1].split("-")[0]], r["model"], r["mixture"],
                                      r["window"], r["step"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run's folder, results/{run}")
    a = ap.parse_args()
    rs = rows(a.run)
    if not rs:
        sys.exit(f"no passkey records under {a.run}/eval/passkey")
    for window in sorted({r["window"] for r in rs}):
        ks = next(r["ks"] for r in rs if r["window"] == window)
        print(f"\nWindow {window}: correct of {rs[0]['trials']} at k = {ks[0]}, {ks[1]}, ..., {ks[-1]} "
              f"(every {ks[1] - ks[0]} tokens or so)\n")
        print("| model | fine-tuning data | step | k_max | correct at each k |")
        print("|---|---|---:|---:|---|")
        for r in (r for r in rs if r["window"] == window):
            print(f"| {r['model']} | {r['mixture']} | {r['step']} | {r['k_max']} | "
                  f"{' '.join(str(c) for c in r['correct'])} |")


if __name__ == "__main__":
    main()
