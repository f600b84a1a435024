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


def eval_args(ap, model_required: bool = True):
    """The arguments every evaluation script takes (rules pass them from the config and the wildcards)."""
    import json

    ap.add_argument("--model", required=model_required, help="checkpoint directory")
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


# exit status of a training run that stopped before its time limit with its state saved (EX_TEMPFAIL: try again)
EXIT_RESUBMIT = 75


def run_training(call, label: str) -> None:
    """Run a fine-tune (``call()``), the same way for every training entry point: stopped before the job's time
    limit with its state saved -> exit 75 (the rule's retries resubmit it); a non-finite loss -> exit 1 with the
    message; the process group torn down before the interpreter exits; the ranks of a finished multi-rank run leave
    through os._exit after the provenance record, without the interpreter's teardown, where C++ destructors of
    threads the libraries left running can abort a rank (SIGABRT seen in CI after the work was done)."""
    import os

    from pi_repro.finetune import StoppedBeforeTimeLimit
    from pi_repro.train import NonFiniteLoss

    try:
        call()
    except StoppedBeforeTimeLimit as e:
        print(e, flush=True)
        sys.exit(EXIT_RESUBMIT)
    except NonFiniteLoss as e:
        print(f"{label}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        close_process_group()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        finish_now()  # the provenance record (rank 0), as at a normal exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def close_process_group():
    """Tear the process group down before the interpreter exits: a rank left to exit with it alive can abort in
    its C++ destructors ("terminate called without an active exception", SIGABRT seen under torchrun + gloo),
    which fails the job after its work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
