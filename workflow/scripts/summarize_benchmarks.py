#!/usr/bin/env python3
"""Print where a run's time and memory went, from the benchmark file every rule writes.

    python workflow/scripts/summarize_benchmarks.py results/default
"""
import argparse
from pathlib import Path

import pandas as pd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    a = ap.parse_args()
    rows = []
    for f in sorted((a.run_dir / "benchmarks").rglob("*.tsv")):
        b = pd.read_csv(f, sep="\t").iloc[-1]
        rows.append({"rule": f.relative_to(a.run_dir / "benchmarks").parts[0], "job": str(f.relative_to(a.run_dir)),
                     "seconds": float(b["s"]), "max_rss_mb": float(b["max_rss"]) if b["max_rss"] != "-" else 0.0})
    if not rows:
        raise SystemExit(f"no benchmark files under {a.run_dir}/benchmarks")
    df = pd.DataFrame(rows)
    by_rule = df.groupby("rule").agg(jobs=("job", "count"), seconds=("seconds", "sum"), max_s=("seconds", "max"),
                                     max_rss_mb=("max_rss_mb", "max")).sort_values("seconds", ascending=False)
    print(by_rule.round(1).to_string())
    print(f"\n{len(df)} jobs, {df['seconds'].sum():.0f} job-seconds in all (wall time is lower with parallel jobs)")


if __name__ == "__main__":
    main()
