"""One extension's fine-tuning run: PI / FT at the extended window L', or the CT control at L on the same tokens."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from . import modeling, train
from .io import read_json, sha256_file, write_json


def training_tokens(files: list[str], seed: int) -> np.ndarray:
    """Documents of all training files, shuffled together with ``seed`` and packed."""
    arrays = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            tokens, offsets = z["tokens"], z["offsets"]
        arrays += [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    random.Random(seed).shuffle(arrays)
    return np.concatenate(arrays)


def check_checkpoint(path: str | Path, method: str, ctx: int, base_window: int) -> dict:
    """Reload the config of an exported checkpoint and check that its extension survived the round trip."""
    cfg = read_json(Path(path) / "config.json")
    rope = cfg.get("rope_parameters") or {}
    if method == "PI":
        want = ctx / base_window
        if rope.get("rope_type") != "linear" or abs(float(rope.get("factor", 0)) - want) > 1e-9:
            raise RuntimeError(f"{path}: PI checkpoint lost its scaling: rope_parameters={rope}, want factor {want}")
    elif rope.get("rope_type", "default") != "default":
        raise RuntimeError(f"{path}: {method} checkpoint has position scaling {rope}")
    return rope


def run_params(hp: dict, method: str, ctx: int, init: str, data_files: list[str]) -> dict:
    """What identifies a fine-tuning run: resume state is reused only if all of it is unchanged."""
    return {"hp": hp, "method": method, "ctx": ctx, "init": sha256_file(Path(init) / "model.safetensors"),
            "data": [sha256_file(f) for f in data_files]}


def finetune(init: str, method: str, ctx: int, base_window: int, hp: dict, steps: list[int], outdir: str,
             manifest: str, data_files: list[str]) -> dict:
    outdir = Path(outdir)
    tokens = training_tokens(data_files, hp["seed"])
    model = modeling.load_model(init)
    model.train()
    if method != "CT" and model.config.max_position_embeddings != ctx:
        raise RuntimeError(f"{init}: window {model.config.max_position_embeddings} does not match ctx {ctx}")
    exports = sorted(s for s in steps if s > 0)
    work = outdir / "_trainer"
    resume = train.prepare_work_dir(work, run_params(hp, method, ctx, init, data_files))
    if resume:
        print(f"resuming from {resume}")
    trainer = train.build_trainer(model, train.Chunks(tokens, ctx), hp, work, outdir, exports, init,
                                  train_window=base_window if method == "CT" else None,
                                  log_path=str(outdir / "train-log.jsonl"))
    result = trainer.train(resume_from_checkpoint=resume)
    entries = {}
    for s in sorted(steps):
        path = Path(init) if s == 0 else outdir / f"step{s}"
        check_checkpoint(path, method, ctx, base_window)
        entries[f"step{s}"] = {"path": str(path), "sha256": sha256_file(path / "model.safetensors")}
    record = {"method": method, "ctx": ctx, "base_window": base_window, "hp": hp, "data": data_files,
              "tokens_per_step": hp["global_batch"] * ctx, "train_tokens_available": int(len(tokens)),
              "final_train_loss": result.training_loss, "checkpoints": entries, "resumed_from": resume}
    write_json(manifest, record)
    return record
