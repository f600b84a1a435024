#!/usr/bin/env python3
"""Write one table of the config (Markdown and LaTeX at two decimals, CSV at full precision) from the evaluation
records its kind reads (rule table)."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import config, paper, tables
from pi_repro.io import write_html
from pi_repro.kinds import KINDS


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", required=True, help="the table's kind (pi_repro.kinds, or a plugin's)")
    ap.add_argument("--plugins", default="", help="comma-separated plugin files of the config (its table kinds)")
    ap.add_argument("--title", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--tex", required=True)
    ap.add_argument("--html", required=True, help="the Markdown table as a page of the HTML report")
    ap.add_argument("--table", help="the table's name in the config (its rows in --quoted)")
    ap.add_argument("--quoted", default="", help="published cells (CSV) to show beside ours, marked as quoted")
    ap.add_argument("--layout", type=json.loads, default={}, help="the kind's layout settings from the config (JSON)")
    ap.add_argument("records", nargs="+")
    a = ap.parse_args()
    config.load_plugins({"plugins": [p for p in a.plugins.split(",") if p]})
    if a.kind not in KINDS:
        ap.error(f"unknown table kind {a.kind!r} (kinds: {', '.join(KINDS)})")
    kind, records = KINDS[a.kind], tables.load_records(a.records)
    if a.quoted:
        frame = kind.frame(records, [c for c in paper.load_cells(a.quoted) if c["table"] == a.table], **a.layout)
    else:
        frame = kind.frame(records, **a.layout)
    disp = kind.display(frame)  # None: each cell as kind.fmt
    tables.write_table(frame, a.title, kind.note(records), md=a.md, csv=a.csv, tex=a.tex, fmt=kind.fmt, disp=disp)
    text = open(a.md).read()
    write_html(a.html, text, a.title)
    print(text)


if __name__ == "__main__":
    main()
