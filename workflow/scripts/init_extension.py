#!/usr/bin/env python3
"""Step 0 of an extension: base weights under the extended config (rule init_extension)."""
import argparse

import _common  # noqa: F401
from pi_repro.methods import METHODS
from pi_repro.modeling import init_extension


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True)
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = init_extension(a.base, a.method, a.ctx, a.base_window, a.out)
    print(f"{a.method}-{a.ctx}: rope_parameters={cfg.rope_parameters}, "
          f"max_position_embeddings={cfg.max_position_embeddings}")


if __name__ == "__main__":
    main()
