#!/usr/bin/env python3
"""Write one of Tables 1-3 (Markdown and LaTeX at two decimals, CSV at full precision) from perplexity records
(rules table1, table2, table3)."""
import argparse

import _common  # noqa: F401
from pi_repro import tables


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", choices=["windows", "steps"], required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--tex", required=True)
    ap.add_argument("records", nargs="+")
    a = ap.parse_args()
    cells = tables.load_cells(a.records, only_model_window=a.kind == "steps")
    ds = ", ".join(sorted(cells["dataset"].unique()))
    stride = tables.read_json(a.records[0])["stride"]
    if a.kind == "windows":
        df = tables.windows_table(cells)
        note = (f"Sliding-window perplexity on {ds} (stride {stride}); columns: evaluation window; "
                "'-': not evaluated (beyond the model's window). None = base model (extrapolation beyond its window).")
    else:
        df = tables.steps_table(cells)
        note = f"Perplexity on {ds} (stride {stride}) at each model's extended window; columns: fine-tuning steps."
    tables.write_table(df, a.title, note, md=a.md, csv=a.csv, tex=a.tex)
    print(open(a.md).read())


if __name__ == "__main__":
    main()
