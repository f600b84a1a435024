"""Fault injection for tests/test_interruptions.py, loaded by Python at start-up when this folder is on PYTHONPATH.

With PI_REPRO_KILL_BETWEEN_WRITES=N set, the fine-tune process SIGKILLs itself at step N between its two writes,
the export of step N (``<outdir>/step{N}``) and the Trainer's resume checkpoint (``Trainer._save_checkpoint``),
whichever order the code writes them in: before the resume checkpoint if the export is already there, after it
otherwise. transformers' Trainer is patched when a program imports it; other processes are left alone."""
import importlib.abc
import importlib.util
import os
import signal
import sys
from pathlib import Path

STEP = os.environ.get("PI_REPRO_KILL_BETWEEN_WRITES")


def _patch(module):
    original = module.Trainer._save_checkpoint

    def exported(trainer) -> bool:  # the Trainer's output_dir is <outdir>/_trainer, exports <outdir>/step{N}
        return (Path(trainer.args.output_dir).parent / f"step{STEP}" / "model.safetensors").is_file()

    def save_checkpoint(self, model, trial):
        at_step = self.state.global_step == int(STEP)
        if at_step and exported(self):
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, model, trial)
        if at_step and not exported(self):
            os.kill(os.getpid(), signal.SIGKILL)

    module.Trainer._save_checkpoint = save_checkpoint


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if STEP:
    sys.meta_path.insert(0, _PatchOnImport())
