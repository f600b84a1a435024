"""Shared start-up of the entry points: make the pi_repro package importable without installing it, and record
the job's provenance when it succeeds (pi_repro.provenance: inputs, output hashes, commit, packages, hardware)."""
import atexit
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pi_repro.provenance import Recorder  # noqa: E402

_recorder = Recorder()
_status = {"code": 0}
_exit, _excepthook = sys.exit, sys.excepthook


def _record_exit(code=0):
    _status["code"] = code if isinstance(code, int) else (0 if code is None else 1)
    _exit(code)


def _record_exception(*exc):
    _status["code"] = 1
    _excepthook(*exc)


def hand_over():
    """Call before os.exec*: the program this process becomes records the job (see provenance.Recorder)."""
    _recorder.hand_over()


def _finish():
    if _status["code"] == 0:
        _recorder.finish()


def finish_now():
    """Write the job's record now, for a process about to leave through os._exit (which skips atexit)."""
    _finish()
    _recorder.active = False


sys.exit, sys.excepthook = _record_exit, _record_exception
atexit.register(_finish)


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
