#!/usr/bin/env python3
"""The base model of one size (rule base_model): shipped, hub, or pretrained here at window L; sealed with the
sha256 of its weights and a logit probe, which every evaluation checks. With --download-only, the hub snapshot
alone (rule download_model, a job that needs internet)."""
import argparse
import json
from pathlib import Path

import _common  # noqa: F401
from pi_repro import fetch
from pi_repro.modeling import seal_checkpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=json.loads, required=True, help="sizes.<size>.base, as JSON")
    ap.add_argument("--path", default="", help="source local: the shipped folder (its SHA256SUMS digest is in --spec)")
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--download-only", action="store_true", help="hub: only the snapshot (rule download_model)")
    ap.add_argument("inputs", nargs="*", help="pretrain: the tokenizer directory, then the packed corpora and their "
                    "indexes;"
                    " hub: the downloaded snapshot")
    a = ap.parse_args()
    if a.spec["source"] == "local":
        a.spec = dict(a.spec, path=a.path)
    if a.spec["source"] == "pretrain":
        from pi_repro.pretrain import pretrain

        tokenizer, *rest = a.inputs
        token_files = [f for f in rest if f.endswith(".npy")]  # their indexes (.idx.npz) follow; read beside each
        out = Path(a.out)
        pretrain(a.spec, token_files, tokenizer, a.window, a.seed, str(out.parent / "_pretrain"), str(out),
                 log_path=str(out.parent / "pretrain-log.jsonl"))
        print(f"pretrained {out}")
    elif a.download_only:
        fetch.download_model(a.spec, a.out)
        print(f"downloaded {a.spec['id']}@{a.spec['revision']} to {a.out}")
        return
    else:
        print(json.dumps(fetch.fetch_model(a.spec, a.out, *a.inputs)))
    record = seal_checkpoint(a.out, a.window)  # what every evaluation of this model checks first
    print(f"sealed {a.out}: sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
