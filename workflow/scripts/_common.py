"""Shared start-up of the entry points: make the pi_repro package importable without installing it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def eval_args(ap):
    """The arguments every evaluation script takes (rules pass them from the config and the wildcards)."""
    import json

    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coords", type=json.loads, default={},
                    help="the record's coordinates: task, dataset, size, method, ctx, tag, step (JSON)")
    ap.add_argument("--out", required=True, help="the evaluation record (JSON)")
    return ap


def save_figure(fig, out, dpi: int = 120) -> None:
    """Lay out and write a figure atomically (a killed job never leaves half a PNG)."""
    from pi_repro.io import atomic_path

    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi)
    print(f"wrote {out}")
