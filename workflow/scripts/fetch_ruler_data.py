#!/usr/bin/env python3
"""One download RULER's essay and QA tasks need (rule ruler_data, part of `snakemake downloads`): fetched from its
pinned URL, written whole or not at all, checked against its sha256; the provenance record says what was fetched."""
import argparse
import json
import time

import _common  # noqa: F401  (puts pi_repro on the path)
from pi_repro import ruler
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=json.loads, required=True, help="the source: url, sha256, file, what (JSON)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--provenance", required=True)
    a = ap.parse_args()
    t = time.time()
    got = ruler.fetch(a.spec, a.out)
    print(f"{a.spec['url']}: {got['bytes']} bytes, sha256 {got['sha256']}"
          + ("" if got["pinned"] else " (no sha256 pinned: recorded here)"))
    write_json(a.provenance, dict(got, what=a.spec["what"], seconds=round(time.time() - t, 2)))


if __name__ == "__main__":
    main()
