#!/usr/bin/env python3
"""Fetch one corpus as JSON lines {id, split, text} (rule fetch_dataset)."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import fetch


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=json.loads, required=True, help="the dataset's config entry, as JSON")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    info = fetch.fetch(a.spec, a.out)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
