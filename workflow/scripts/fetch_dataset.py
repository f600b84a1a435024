#!/usr/bin/env python3
"""Fetch one corpus as JSON lines {id, split, text} (rule fetch_dataset)."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import fetch
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=json.loads, required=True, help="the dataset's config entry, as JSON")
    ap.add_argument("--train-tokens", type=int, default=0, help="tokens of the training split the fine-tunes need")
    ap.add_argument("--path", default="", help="a local dataset's file (its sha256 is in --spec)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--provenance", required=True, help="JSON record of what was fetched (source, revision, sha256)")
    a = ap.parse_args()
    spec = dict(a.spec, path=a.path) if a.spec["source"] == "local" else a.spec
    info = fetch.fetch(spec, a.out, a.train_tokens)
    write_json(a.provenance, info)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
