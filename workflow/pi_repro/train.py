"""Training: pretraining of the small base model and the PI / FT / CT fine-tunes, through transformers' Trainer.

The optimizer is the paper's: AdamW with β = (0.9, 0.95), weight decay 0, linear warm-up over ``warmup_steps``
from ``warmup_start`` × max lr, then constant (``schedule: constant``), cosine (``cosine``, pretraining) or linear
(``linear``, YaRN's fine-tuning recipe) decay to ``min_lr_ratio`` × max lr. The same code runs on one CPU, on one
GPU, and under torchrun / deepspeed with ZeRO-3 (``deepspeed: <config.json>``).

Checkpoints: the Trainer's own (model + optimizer + RNG state, for resuming) go to ``work_dir``; at every step
listed in ``export_steps`` the weights are also written, atomically, as a Hugging Face checkpoint
``<export_dir>/step{N}`` with the extended config (``rope_parameters``), the tokenizer and a logit probe
(``modeling.PROBE_FILE``). Under ZeRO-3 the export gathers the partitioned weights
(``stage3_gather_16bit_weights_on_model_save``) into safetensors, and the probe is computed by all ranks on the
partitioned training-time model, so reloading the export can be checked against it. The export of a step is
written before its resume state, so a kill between the two never loses an export.

Under ZeRO-3 the ``TrainingArguments`` must exist before the model is loaded (``from_pretrained`` then loads it
partitioned): call ``training_args`` first, load, then ``build_trainer``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback

from .modeling import copy_tokenizer, record_probe


class Chunks(Dataset):
    """Non-overlapping chunks of ``seq_len`` tokens of a packed token array (documents separated by BOS)."""

    def __init__(self, tokens: np.ndarray, seq_len: int):
        n = len(tokens) // seq_len
        if n == 0:
            raise ValueError(f"the training data has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
        self.tokens, self.seq_len, self.n = tokens, seq_len, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = torch.from_numpy(self.tokens[i * self.seq_len:(i + 1) * self.seq_len].astype(np.int64))
        return {"input_ids": x}


class SplitCollator:
    """Stack sequences; split each into pieces of ``piece`` tokens (CT: the same tokens, trained at window L)."""

    def __init__(self, piece: int | None = None):
        self.piece = piece

    def __call__(self, features):
        ids = torch.stack([f["input_ids"] for f in features])
        if self.piece and self.piece < ids.shape[1]:
            if ids.shape[1] % self.piece:
                raise ValueError(f"sequence length {ids.shape[1]} is not a multiple of the training window "
                                 f"{self.piece}")
            ids = ids.reshape(-1, self.piece)
        return {"input_ids": ids, "labels": ids.clone()}


INJECT_NAN_ENV = "PI_REPRO_INJECT_NAN_AT_STEP"
INJECT_FILL_ENV = "PI_REPRO_INJECT_FILL_DEVICE_AT_STEP"


class DiskFull(OSError):
    """Writing a checkpoint ran out of space: the previous export and resume state are kept."""


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or its cause) is a full device: an OSError ENOSPC, or a writer's own error around one
    (safetensors reports "No space left on device (os error 28)")."""
    import errno

    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e) or "os error 28" in str(e) or "StorageFull" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class NonFiniteLoss(FloatingPointError):
    """A fine-tune's loss became NaN or infinite: the run stops at that step with its last good state kept."""


def lr_lambda(step: int, warmup_steps: int, warmup_start: float, schedule: str = "constant", total_steps: int = 1,
              min_lr_ratio: float = 0.1) -> float:
    """Multiplier of the max learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":  # YaRN's fine-tuning (DeepSpeed's WarmupDecayLR): to min_lr_ratio at the last step
        return min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")


def training_args(hp: dict, work_dir: str | Path, report_to: str = "none"):
    """``TrainingArguments`` for ``hp``: global batch = micro batch × gradient accumulation × world size.
    ``report_to``: experiment tracking through the Trainer (none, tensorboard or wandb; config ``train.report_to``)."""
    from transformers import TrainingArguments

    accel = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    micro = hp["micro_batch"]
    seqs_per_step = hp["global_batch"]
    if seqs_per_step % (micro * world):
        raise ValueError(f"global batch {seqs_per_step} is not a multiple of micro batch {micro} × world size {world}")
    return TrainingArguments(
        output_dir=str(work_dir),
        max_steps=hp["steps"],
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=seqs_per_step // (micro * world),
        learning_rate=float(hp["lr"]),
        adam_beta1=hp["betas"][0],
        adam_beta2=hp["betas"][1],
        weight_decay=hp["weight_decay"],
        max_grad_norm=hp.get("max_grad_norm", 1.0),
        optim="adamw_torch",
        logging_steps=hp.get("log_every", 10),
        save_strategy="steps",
        save_steps=hp.get("resume_every", 50),
        save_total_limit=1,
        save_only_model=False,
        report_to=[] if report_to == "none" else [report_to],
        seed=hp["seed"],
        data_seed=hp["seed"],
        dataloader_drop_last=True,
        dataloader_num_workers=0,
        bf16=bool(hp.get("bf16", False)) and accel,
        activation_checkpointing=bool(hp.get("gradient_checkpointing", False)),
        deepspeed=hp.get("deepspeed"),
        use_cpu=not accel,
        disable_tqdm=False,
        remove_unused_columns=False,
    )


class ExportAt(TrainerCallback):
    """Save (the export, then the resume state: ``PITrainer._save_checkpoint``) at each step of ``export_steps``, and
    append each log record of the main process to ``log_path`` (JSON lines; none without it)."""

    def __init__(self, export_steps: list[int], log_path: str | Path | None = None):
        self.export_steps, self.log_path = export_steps, log_path

    def on_step_end(self, args, state, control, **kw):
        if state.global_step in self.export_steps:
            control.should_save = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if self.log_path and state.is_world_process_zero and logs:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class StopBeforeLimit(TrainerCallback):
    """Save the resume state and stop at the first step end after ``stop_at`` (a Unix time: the job's time limit
    minus a margin; never without it); every rank stops at the same step."""

    def __init__(self, stop_at: float | None):
        self.stop_at = stop_at

    def on_step_end(self, args, state, control, **kw):
        if self.stop_at is None or state.global_step >= state.max_steps:
            return control
        late = time.time() >= self.stop_at
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([int(late)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            late = bool(flag.item())
        if late:
            control.should_save = True
            control.should_training_stop = True
        return control


class FillDevice(TrainerCallback):
    """Fault injection (tests, ``INJECT_FILL_ENV``): at the end of step ``fill_at``, fill the device of ``work_dir``
    (a file ``.filler`` written until the write fails), so that the next checkpoint write runs out of space."""

    def __init__(self, fill_at: int, work_dir: str | Path):
        self.fill_at, self.work_dir = fill_at, work_dir

    def on_step_end(self, args, state, control, **kw):
        if self.fill_at and state.global_step == self.fill_at:
            with open(Path(self.work_dir) / ".filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 16))
                        f.flush()
                except OSError:
                    pass
        return control


class PITrainer(Trainer):
    """The Trainer with the paper's schedule (``lr_lambda`` of ``hp``), a non-finite loss stopping the run before
    its optimizer step (``NonFiniteLoss``), the export of ``export_dir/step{N}`` at each step of ``export_steps``
    written before the resume state in ``work_dir``, and a full device reported as ``DiskFull``. ``tokenizer_dir``:
    copied into each export; ``probe_len``: the length of the logit probe recorded with it (none if 0 or None);
    ``nan_at``: fault injection (tests, ``INJECT_NAN_ENV``), a NaN loss at that step (none if 0)."""

    def __init__(self, *, hp: dict, work_dir: str | Path, export_dir: str | Path | None, export_steps: list[int],
                 tokenizer_dir: str | Path | None, probe_len: int | None = None, nan_at: int = 0, **kw):
        self.hp, self.work_dir, self.export_dir, self.export_steps = hp, work_dir, export_dir, export_steps
        self.tokenizer_dir, self.probe_len, self.nan_at = tokenizer_dir, probe_len, nan_at
        super().__init__(**kw)

    def compute_loss(self, model, inputs, *a, **kw):
        out = super().compute_loss(model, inputs, *a, **kw)
        if self.nan_at and self.state.global_step + 1 == self.nan_at:
            out = (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")
        return out

    def training_step(self, model, inputs, *a, **kw):
        # after backward, before the optimizer step: the weights of this step are still those of the last
        loss = super().training_step(model, inputs, *a, **kw)
        if not torch.isfinite(loss).all():
            step = self.state.global_step + 1
            kept = last_checkpoint(self.work_dir)
            raise NonFiniteLoss(
                f"non-finite training loss ({float(loss)}) at step {step}: stopped before the optimizer step, "
                f"so no weights were updated with it; kept: the resume state {kept or '(none yet)'} and the "
                f"exports written so far. Fix the cause (learning rate, data, hardware) and rerun: the run "
                f"resumes from {Path(kept).name if kept else 'step 0'}")
        return loss

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            hp = self.hp
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer,
                lambda s: lr_lambda(s, hp["warmup_steps"], hp["warmup_start"], hp.get("schedule", "constant"),
                                    num_training_steps, hp.get("min_lr_ratio", 0.1)))
        return self.lr_scheduler

    def _save_checkpoint(self, model, trial):
        # Export first, resume state second: the resume state of step N (which, with save_total_limit=1,
        # also deletes the previous one) must never exist without the export of step N, or a job killed
        # between the two writes would resume after N and never export it. The other way round, a kill
        # between the writes resumes before N and exports N again (bitwise the same weights).
        step = self.state.global_step
        kept = last_checkpoint(self.work_dir)
        try:
            if self.export_dir is not None and step in self.export_steps:
                self.export(Path(self.export_dir) / f"step{step}")
            super()._save_checkpoint(model, trial)
        except Exception as e:
            if not disk_full(e):
                raise
            raise DiskFull(
                f"no space left on the device while writing step {step} (export to {self.export_dir}, resume state "
                f"to {self.work_dir}): the exports written before and the resume state {kept or '(none yet)'} are "
                f"intact (exports are renamed into place only once complete). Free space and rerun: the run "
                f"resumes from {Path(kept).name if kept else 'step 0'}") from e

    def export(self, out: Path):
        """Write the weights, probe and tokenizer as the Hugging Face checkpoint ``out``, atomically (staged, then
        renamed into place)."""
        # save_model is collective under ZeRO-3 (weights are gathered) and writes on the main process only
        staging = out.parent / f".{out.name}.staging"
        if self.args.should_save and staging.exists():
            shutil.rmtree(staging)
        self.save_model(str(staging))
        if self.probe_len:  # collective under ZeRO-3: every rank runs the forward pass
            record_probe(self.model, staging, self.probe_len, device=self.args.device, write=self.args.should_save)
        if self.args.should_save:
            copy_tokenizer(self.tokenizer_dir, staging)
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)


def build_trainer(model, dataset, hp: dict, work_dir: str | Path, export_dir: str | Path | None,
                  export_steps: list[int], tokenizer_dir: str | Path | None, train_window: int | None = None,
                  log_path: str | Path | None = None, args=None, probe_len: int | None = None,
                  stop_at: float | None = None, collator=None):
    """A Trainer for ``hp`` (see ``config/*.yaml``, key ``train``) that exports checkpoints at ``export_steps``
    and, given ``stop_at`` (a Unix time), saves its resume state and stops early once that time has passed.
    ``collator``: how a batch is made (default: equal-length sequences, split to ``train_window`` for CT)."""
    nan_at = int(os.environ.get(INJECT_NAN_ENV, "0") or 0)  # fault injection (tests): a NaN loss at this step
    fill_at = int(os.environ.get(INJECT_FILL_ENV, "0") or 0)  # fault injection (tests): fill the device here
    callbacks = [ExportAt(export_steps, log_path), StopBeforeLimit(stop_at)]
    if fill_at:
        callbacks.append(FillDevice(fill_at, work_dir))
    return PITrainer(hp=hp, work_dir=work_dir, export_dir=export_dir, export_steps=export_steps,
                     tokenizer_dir=tokenizer_dir, probe_len=probe_len, nan_at=nan_at,
                     model=model, args=args or training_args(hp, work_dir), train_dataset=dataset,
                     data_collator=collator or SplitCollator(train_window), callbacks=callbacks)


def last_checkpoint(work_dir: str | Path) -> str | None:
    ckpts = sorted(Path(work_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [c for c in ckpts if (c / "trainer_state.json").is_file()]
    return str(complete[-1]) if complete else None


def prepare_work_dir(work_dir: str | Path, params: dict) -> str | None:
    """Make ``work_dir`` hold the resume state of *this* run: reuse it if its recorded parameters match,
    otherwise start afresh. Return the checkpoint to resume from, if any."""
    work_dir = Path(work_dir)
    stamp = work_dir / "run-params.json"
    text = json.dumps(params, sort_keys=True, indent=1)
    if work_dir.exists() and (not stamp.is_file() or stamp.read_text() != text):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(text)
    return last_checkpoint(work_dir)
