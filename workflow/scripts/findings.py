#!/usr/bin/env python3
"""Check the paper's perplexity findings on this run's tables and print them with their numbers (rule findings)."""
import argparse

import _common  # noqa: F401
from pi_repro import findings, tables
from pi_repro.io import atomic_path, write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--table1", required=True)
    ap.add_argument("--table2", required=True)
    ap.add_argument("--table3", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-json", required=True)
    a = ap.parse_args()
    res = findings.check(tables.read_table(a.table1), tables.read_table(a.table2), tables.read_table(a.table3),
                         a.base_window)
    md = findings.to_markdown(res)
    write_json(a.out_json, res)
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
