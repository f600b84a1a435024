#!/usr/bin/env python3
"""Why PI at step 0 loses passkey retrieval in the small model: how the heads that retrieve read the prompt, on the
base model and on its extensions (pi_repro.passkey.attention_profile; docs/calibration.md).

Prompts inside L (Table 4's, without the intro; `--length` tokens, the needle `--ks` tokens from the end,
`--trials` random keys each). The first checkpoint is the reference: its copying heads (largest attention from
an answer position to the digit it must produce next, in the needle) and its previous-token heads (largest
attention on the token before) are followed through the others.

    python benchmarks/passkey_attention.py resources/models/mini results/table4-regimes/models/mini/PI-256/step0 ...
"""
import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402

from pi_repro import modeling, passkey  # noqa: E402


def heads(matrix, n):
    """The ``n`` (layer, head) pairs of largest value."""
    a = np.asarray(matrix)
    order = np.argsort(a, axis=None)[::-1][:n]
    return [tuple(int(x) for x in np.unravel_index(i, a.shape)) for i in order]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="checkpoints (the first is the reference, e.g. the base model)")
    ap.add_argument("--length", type=int, default=120, help="prompt tokens (inside the base window L)")
    ap.add_argument("--ks", default="42,77,112")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write every profile here (JSON)")
    a = ap.parse_args()
    tok = modeling.load_tokenizer(a.models[0])
    rng = random.Random(a.seed)
    trials = [passkey.trial_at(tok, passkey.random_key(rng), int(k), a.length, intro=False)
              for k in a.ks.split(",") for _ in range(a.trials)]
    profiles = {}
    for path in a.models:
        model = modeling.load_model(path)
        profiles[path] = passkey.attention_profile(model, tok, trials)
        profiles[path]["rope_parameters"] = dict(model.config.rope_parameters or {})
    ref = profiles[a.models[0]]
    copy_heads, prev_heads = heads(ref["target"], 2), heads(ref["prev1"], 3)
    cols = ([f"copy L{ly}H{h}: all / first" for ly, h in copy_heads]
            + [f"prev L{ly}H{h}: -1 / -2" for ly, h in prev_heads] + ["p(digit) mean", "retrieved"])
    print(f"{len(trials)} prompts of {a.length} tokens, k = {a.ks}; reference {a.models[0]}")
    print("| checkpoint | scale | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for path, p in profiles.items():
        cells = [f"{p['target'][ly][h]:.2f} / {p['target_first'][ly][h]:.2f}" for ly, h in copy_heads]
        cells += [f"{p['prev1'][ly][h]:.2f} / {p['prev2'][ly][h]:.2f}" for ly, h in prev_heads]
        cells += [f"{np.mean(p['p_digits']):.2f}", f"{p['retrieved']:.0%}"]
        print(f"| {path} | {p['rope_parameters'].get('factor', 1)} | " + " | ".join(cells) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps({"length": a.length, "ks": a.ks, "trials": a.trials, "seed": a.seed,
                                           "profiles": profiles}, indent=1))


if __name__ == "__main__":
    main()
