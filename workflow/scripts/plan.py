#!/usr/bin/env python3
"""What a configuration costs before it is launched (rule plan): per target (`all`, each table), per rule and per
job, the GPUs asked and the estimated GPU-hours (pi_repro.cost). Prints it and writes it to --out."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import cost
from pi_repro.io import atomic_path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=json.loads, required=True, help="the validated configuration, as JSON")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    text = cost.render(a.config)
    with atomic_path(a.out) as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
