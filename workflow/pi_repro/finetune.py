"""One extension's fine-tuning run: PI / FT at the extended window L', or the CT control at L on the same tokens."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import data, memory, methods, modeling, passkey, train
from .io import read_json, sha256_file, sha256_weights, write_json
from .launch import STOP_AT_ENV


def training_tokens(files: list[str], seed: int) -> data.DocStream:
    """Documents of all training files, shuffled together with ``seed``, as one token stream read from the
    memory-mapped files (no rank holds the corpus in memory)."""
    return data.DocStream(files, seed)


class PasskeyMixture(Dataset):
    """An extension's fine-tuning sequences under a mixture with passkey documents (``finetune_mixtures``): the
    corpus' chunks of ``seq_len`` tokens (``train.Chunks``) plus f/(1 - f) times as many passkey sequences, so that
    a fraction f = ``passkey_fraction`` of all sequences are. A passkey sequence is ``seq_len // piece`` pieces
    (one for PI and FT; L'/L for CT, which trains at L = ``piece``), each starting with one passkey document of at
    most ``piece`` tokens (``passkey.training_ids``: the needle-to-question distance varied over the piece),
    filled up with corpus text from a random place, as the base model's pretraining mixture lays them out at L
    (``pretrain.mixture``, ``passkey_docs: varied``). The Trainer's seeded sampler shuffles both kinds together;
    item i is a function of (seed, i) alone, the same on every rank and after a resume."""

    def __init__(self, tokens, seq_len: int, tokenizer, passkey_fraction: float, seed: int, piece: int | None = None):
        if not 0 < passkey_fraction < 1:
            raise ValueError(f"passkey_fraction must be in (0, 1), not {passkey_fraction}")
        piece = piece or seq_len
        if seq_len % piece:
            raise ValueError(f"sequence length {seq_len} is not a multiple of the training window {piece}")
        self.chunks, self.tokens, self.tok, self.seed = train.Chunks(tokens, seq_len), tokens, tokenizer, seed
        self.seq_len, self.piece = seq_len, piece
        self.n_passkey = round(passkey_fraction / (1 - passkey_fraction) * len(self.chunks))
        if self.n_passkey:  # a passkey document that does not fit the window is named now, before the model loads
            self[len(self.chunks)]

    def __len__(self):
        return len(self.chunks) + self.n_passkey

    def __getitem__(self, i):
        if i < len(self.chunks):
            return self.chunks[i]
        if not 0 <= i < len(self):
            raise IndexError(i)
        rng = random.Random(f"passkey-mixture/{self.seed}/{i}")
        pieces = []
        for _ in range(self.seq_len // self.piece):
            doc = np.asarray(passkey.training_ids(self.tok, rng, self.piece), dtype=np.int64)
            fill = rng.randrange(0, len(self.tokens) - self.piece)
            pieces += [doc, np.asarray(self.tokens[fill:fill + self.piece - len(doc)], dtype=np.int64)]
        return {"input_ids": torch.from_numpy(np.concatenate(pieces))}


def training_data(tokens, ctx: int, method: str, base_window: int, hp: dict, tokenizer):
    """The dataset a fine-tune reads: the corpus chunks of ``ctx`` tokens, or, under a mixture with passkey
    documents (``hp['mixture']``, from ``finetune_mixtures``), ``PasskeyMixture`` laid out at the training window
    (the method's training window: L' for an extension, L for the control CT)."""
    mix = hp.get("mixture")
    if not mix:
        return train.Chunks(tokens, ctx)
    return PasskeyMixture(tokens, ctx, tokenizer, mix["passkey_fraction"], hp["seed"],
                          piece=methods.METHODS[method].train_window(base_window, ctx))


def check_checkpoint(path: str | Path, method: str, ctx: int, base_window: int) -> dict:
    """Reload the config of an exported checkpoint and check that its extension survived the round trip."""
    try:
        return methods.check(read_json(Path(path) / "config.json"), method, ctx, base_window)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: {method} checkpoint lost its method's parameters: {e}") from None


def run_params(hp: dict, method: str, ctx: int, init: str, data_files: list[str]) -> dict:
    """What identifies a fine-tuning run: resume state is reused only if all of it is unchanged."""
    return {"hp": hp, "method": method, "ctx": ctx, "init": sha256_weights(init),
            "data": [sha256_file(f) for f in data_files]}


def distributed(use_deepspeed: bool) -> tuple[int, int]:
    """(rank, world size); under torchrun / srun the process group is set up before anything touches files
    (through DeepSpeed when it is used, so that ZeRO-3's partitioned loading sees the world size)."""
    import torch.distributed as dist

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed(dist_backend=backend)
        else:
            dist.init_process_group(backend=backend)
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def verify_export(path: str | Path, method: str, ctx: int, base_window: int) -> dict:
    """Reload an exported checkpoint as evaluation will: its config must carry the extension and its logits must
    match those of the training-time model (the probe)."""
    rope = check_checkpoint(path, method, ctx, base_window)
    dtype, device_map = modeling.eval_placement()
    model = modeling.load_model(path, dtype=dtype, device_map=device_map)
    err = modeling.verify_probe(model, path)
    del model
    if torch.cuda.is_available():  # rank 0 checks step 0 before training: the other ranks' GPUs are returned
        torch.cuda.empty_cache()
    return {"rope_parameters": rope, "probe_error": err}


class ExportCheckFailed(RuntimeError):
    """An export failed its check after training. Not worth a resubmission: the next attempt of the job finds the
    verdict (``EXPORT_FAILED`` in the resume state's folder) and stops before it trains or loads anything."""


EXPORT_FAILED = "export-check-failed.json"


def refuse_failed_exports(work: Path, params: dict) -> None:
    """Stop a resubmitted fine-tune whose previous attempt trained and then failed the export check with these
    same settings (Snakemake resubmits every failed job; this makes the resubmission cost seconds, not a run)."""
    verdict = work / EXPORT_FAILED
    if verdict.is_file():
        v = read_json(verdict)
        if v.get("params") == params:
            raise ExportCheckFailed(f"a previous attempt of this fine-tune trained and its exports failed their check:"
                                    f" {v['error']}. Not trained again: fix the cause, then delete {work} (or "
                                    "change a training setting) and rerun")


class StoppedBeforeTimeLimit(RuntimeError):
    """The run saved its resume state and stopped before the job's time limit; the next submission continues."""


def train_and_export(init: str, dataset, hp: dict, outdir: str | Path, exports: list[int], params: dict,
                     probe_len: int, rank: int, world: int, collator=None, train_window: int | None = None,
                     label: str = "", report_to: str = "none") -> dict:
    """Train ``init`` on ``dataset`` for ``hp['steps']`` steps through the Trainer (resuming from ``outdir/_trainer``
    when its recorded ``params`` match), exporting ``outdir/step{N}`` at each step of ``exports``. Returns what the
    manifest records about the run on rank 0 (the other ranks return after the last barrier)."""
    import gc


    outdir = Path(outdir)
    work = outdir / "_trainer"
    if rank == 0:
        resume = train.prepare_work_dir(work, params)
        missing = [s for s in exports if s > 0 and not (outdir / f"step{s}" / "model.safetensors").is_file()]
        if resume and missing and min(missing) <= _step(resume):  # (the export list changed since it was saved)
            print(f"{label}: {resume} is past step {min(missing)}, which is to be exported and is not: training "
                  "again from step 0")
            shutil.rmtree(work)
            resume = train.prepare_work_dir(work, params)
    _barrier(world)
    if rank != 0:
        resume = train.last_checkpoint(work)
    done = _step(resume) if resume else 0
    if done >= hp["steps"]:  # finished before: its exports precede its resume state (train.build_trainer)
        if rank == 0:
            print(f"{label}: {resume} is the resume state of the final step {hp['steps']}: nothing to train; the "
                  "exports are verified again")
        return finished_run(resume, world, hp)
    if resume and rank == 0:
        print(f"resuming from {resume}")
    if report_to == "tensorboard":  # event files beside the run's exports (the resume state may be deleted)
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(outdir / "tensorboard"))
    args = train.training_args(hp, work, report_to)  # before loading: under ZeRO-3 the model is loaded partitioned
    model = modeling.load_model(init, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    model.train()
    trainer = train.build_trainer(model, dataset, hp, work, outdir, sorted(s for s in exports if s > 0), init,
                                  train_window=train_window, log_path=str(outdir / "train-log.jsonl"), args=args,
                                  probe_len=probe_len, collator=collator,
                                  stop_at=float(os.environ[STOP_AT_ENV]) if os.environ.get(STOP_AT_ENV) else None)
    result = trainer.train(resume_from_checkpoint=resume)
    if trainer.state.global_step < hp["steps"]:
        raise StoppedBeforeTimeLimit(
            f"{label}: stopped at step {trainer.state.global_step} of {hp['steps']} before the job's time limit;"
            f" the resume state is saved in {work}: the next submission of this job continues from it")
    trained_to = trainer.state.global_step
    plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    zero_stage = plugin.zero_stage if plugin is not None else None
    _barrier(world)
    del trainer, model
    gc.collect()
    if hp.get("deepspeed"):  # reload as evaluation will: whole, not ZeRO-3-partitioned
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    out = {"world_size": world, "deepspeed_zero_stage": zero_stage, "final_train_loss": result.training_loss,
           "resumed_from": resume, "steps_run": max(0, trained_to - done),
           "train_seconds": (result.metrics or {}).get("train_runtime")}
    if rank == 0:  # what this attempt measured, for a rerun that finds the run finished (``finished_run``)
        write_json(work / FINISHED, out)
    return out


def _step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[1])


FINISHED = "finished.json"  # in the resume state's folder: the measurements of the attempt that reached the end


def finished_run(checkpoint: str, world: int, hp: dict) -> dict:
    """What ``train_and_export`` returns for a run whose resume state is already at its final step (an attempt
    that trained to the end and was stopped before its manifest was written, or a rerun that changes no training
    setting): what the attempt that trained recorded (``FINISHED``); without it, nothing trained and the loss the
    mean of the losses the run logged (each weighted by the steps it covers)."""
    measured = Path(checkpoint).parent / FINISHED
    if measured.is_file():
        return dict(read_json(measured), resumed_from=checkpoint)
    state = read_json(Path(checkpoint) / "trainer_state.json")
    losses, last = [], 0
    for entry in state.get("log_history", []):
        if "loss" in entry:
            losses.append((entry["loss"], entry["step"] - last))
            last = entry["step"]
    covered = sum(n for _, n in losses)
    loss = sum(v * n for v, n in losses) / covered if covered else None
    # as configured: this attempt started no engine to ask
    zero = memory.zero_stage(hp) if hp.get("deepspeed") else None
    return {"world_size": world, "deepspeed_zero_stage": zero, "final_train_loss": loss, "resumed_from": checkpoint,
            "steps_run": 0, "train_seconds": None}


def throughput(init: str, seq_len: int, tokens: int, seconds: float | None, bf16: bool = False) -> dict | None:
    """Tokens per second, model FLOP/s and MFU of this run's training (pi_repro.perf), for finetune.json: the MFU
    against a matmul peak measured here, on the training device in the training dtype (per rank: a multi-rank run's
    FLOP/s are divided by its world size)."""
    from transformers import LlamaConfig

    from . import perf

    if not seconds:
        return None
    out = perf.training_throughput(LlamaConfig.from_pretrained(init), seq_len, tokens, seconds)
    cuda = torch.cuda.is_available()
    peak = perf.matmul_peak(4096 if cuda else 1024, torch.bfloat16 if bf16 and cuda else torch.float32, seconds=1.0,
                            device="cuda" if cuda else "cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return dict(out, matmul_peak_flops_per_second=peak, world_size=world,
                mfu=out["achieved_flops_per_second"] / world / peak)


def verify_exports(init: str, steps: list[int], outdir: str | Path, method: str, ctx: int, base_window: int) -> dict:
    """Reload every export (step 0: ``init``) as evaluation will and check it (``verify_export``): the manifest's
    ``checkpoints`` entries, with the sha256 of each one's weights."""
    entries = {}
    for s in sorted(steps):
        path = Path(init) if s == 0 else Path(outdir) / f"step{s}"
        check = verify_export(path, method, ctx, base_window)
        entries[f"step{s}"] = {"path": str(path), "sha256": sha256_weights(path), **check}
        print(f"step{s}: verified (probe error {check['probe_error']})")
    return entries


def finetune(init: str, method: str, ctx: int, base_window: int, hp: dict, steps: list[int], outdir: str,
             manifest: str, data_files: list[str], options: dict | None = None) -> dict | None:
    """Run one extension's fine-tuning (one process, or one of ``WORLD_SIZE`` ranks under torchrun); rank 0
    verifies every export and writes ``manifest`` last, then deletes the resume state unless
    ``options['keep_resume_state']`` (targets.train_options). Returns the manifest record (None on other ranks)."""
    options = with_defaults(options)
    rank, world = distributed(bool(hp.get("deepspeed")))
    tokens = training_tokens(data_files, hp["seed"])
    tokenizer = modeling.load_tokenizer(init)
    data.check_tokenizer(data_files, tokenizer, init)  # before the model loads
    needed = hp["steps"] * hp["global_batch"] * ctx
    if len(tokens) < needed:
        raise ValueError(f"{method}-{ctx}: the training data {data_files} has {len(tokens)} tokens; {hp['steps']} steps"
                         f" x {hp['global_batch']} sequences x {ctx} tokens need {needed} (fetch a larger subset)")
    m = methods.METHODS[method]
    window, want = read_json(Path(init) / "config.json")["max_position_embeddings"], m.positions(base_window, ctx)
    if window != want:
        raise RuntimeError(f"{init}: window {window}; a {method} model of ctx {ctx} from L = {base_window} has {want}")
    # what identifies the run (hashes of the weights and the training tokens, GBs): read by rank 0 alone
    params = run_params(hp, method, ctx, init, data_files) if rank == 0 else None
    if rank == 0:  # a resubmission of an attempt whose exports failed their check stops here, before any model loads
        refuse_failed_exports(Path(outdir) / "_trainer", params)
    if rank == 0 and 0 in steps:  # step 0 is the initial checkpoint: checked before any GPU-hour is spent
        step0 = verify_exports(init, [0], outdir, method, ctx, base_window)
    trained = train_and_export(init, training_data(tokens, ctx, method, base_window, hp, tokenizer), hp, outdir, steps,
                               params, ctx, rank, world,
                               train_window=None if m.train_window(base_window, ctx) == ctx else base_window,
                               label=f"{method}-{ctx}", report_to=options["report_to"])
    if rank != 0:
        return None
    try:
        checkpoints = verify_exports(init, [s for s in steps if s > 0], outdir, method, ctx, base_window)
    except (RuntimeError, FileNotFoundError) as e:  # recorded so that a resubmission does not train again
        write_json(Path(outdir) / "_trainer" / EXPORT_FAILED, {"params": params, "error": str(e)})
        raise ExportCheckFailed(f"{method}-{ctx}: {e}") from e
    if 0 in steps:
        checkpoints = {**step0, **checkpoints}
    record = {"method": method, "ctx": ctx, "base_window": base_window, "hp": hp, "data": data_files,
              "mixture": (hp.get("mixture") or {}).get("name", "corpus"),
              "world_size": world, "deepspeed_zero_stage": trained["deepspeed_zero_stage"],
              "tokens_per_step": hp["global_batch"] * ctx, "train_tokens_available": int(len(tokens)),
              "final_train_loss": trained["final_train_loss"],
              "checkpoints": checkpoints,
              "resumed_from": trained["resumed_from"],
              # the control trains the same tokens at L: its sequences are L long
              "throughput": throughput(init, m.train_window(base_window, ctx),
                                       trained["steps_run"] * hp["global_batch"] * ctx, trained["train_seconds"],
                                       bool(hp.get("bf16")))}
    write_json(manifest, record)
    drop_resume_state(Path(outdir) / "_trainer", options["keep_resume_state"])
    return record


def with_defaults(options: dict | None) -> dict:
    """Training options (targets.train_options) with their defaults: no tracking, the resume state deleted."""
    return {"report_to": "none", "keep_resume_state": False, **(options or {})}


def drop_resume_state(work: Path, keep: bool) -> None:
    """Once the manifest records the verified exports, the resume state (optimizer included: 520 GB per save for
    33B, ~4 TB over the paper's runs) is no longer needed: deleted, unless the config keeps it."""
    if keep or not work.is_dir():
        return
    freed = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    shutil.rmtree(work)
    print(f"deleted the resume state {work} ({freed / 1e9:.3g} GB; train.keep_resume_state keeps it)")
