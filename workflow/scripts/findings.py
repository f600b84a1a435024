#!/usr/bin/env python3
"""Check the paper's findings on this run's tables and print them with their numbers (rule findings)."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import config, findings, kinds, tables
from pi_repro.io import atomic_path, read_json, write_html, write_json
from pi_repro.provenance import check_read


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--tables", type=json.loads, required=True, help="{title: {kind, dataset, csv}} (JSON)")
    ap.add_argument("--hub-sizes", default="", help="comma-separated sizes whose base model is a hub LLaMA")
    ap.add_argument("--untrained", default="", help="comma-separated size:ctx of PI extensions with steps 0")
    ap.add_argument("--theory", help="Figure 2's numbers (JSON file of rule figure2)")
    ap.add_argument("--plugins", default="", help="comma-separated plugin files of the config (its table kinds)")
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-html", required=True, help="the findings as a page of the HTML report")
    a = ap.parse_args()
    config.load_plugins({"plugins": [p for p in a.plugins.split(",") if p]})
    check_read([t["csv"] for t in a.tables.values()] + ([a.theory] if a.theory else []), "check the findings on")
    frames = {n: dict(t, frame=tables.read_table(t["csv"])) for n, t in a.tables.items()}
    theory = read_json(a.theory) if a.theory else None
    untrained = {(s.split(":")[0], int(s.split(":")[1])) for s in a.untrained.split(",") if s}
    res = kinds.check_findings(frames, a.base_window, [s for s in a.hub_sizes.split(",") if s], theory, untrained)
    md = findings.to_markdown(res)
    write_json(a.out_json, res)
    with atomic_path(a.out_md) as tmp:
        tmp.write_text(md)
    write_html(a.out_html, md, "Findings")
    print(md)


if __name__ == "__main__":
    main()
