"""Pretraining the default configuration's base model at window L (the stand-in for released LLaMA weights).

The data mixture is the training splits of the configured corpora plus passkey-format documents (a fraction
``passkey_fraction`` of all tokens), so the base model learns in-context retrieval within its own window.
Documents are shuffled with the seed and packed into sequences of L tokens.
"""
from __future__ import annotations

import random

import numpy as np
from transformers import LlamaForCausalLM

from . import data, modeling, passkey, train


def mixture(token_files: list[str], tokenizer, window: int, passkey_fraction: float, seed: int) -> np.ndarray:
    arrays = []
    for f in token_files:
        with np.load(f, allow_pickle=False) as z:
            tokens, offsets = z["tokens"], z["offsets"]
        arrays += [tokens[offsets[i]:offsets[i + 1]].astype(np.int64) for i in range(len(offsets) - 1)]
    n_corpus = sum(len(a) for a in arrays)
    if passkey_fraction > 0:
        fixed = len(data.encode_docs(tokenizer, data.passkey_docs(1, 0, seed))[0])
        filler = len(tokenizer(" " + passkey.FILLER, add_special_tokens=False)["input_ids"])
        max_fillers = max(0, (window - fixed) // filler)
        mean_len = fixed + filler * max_fillers / 2
        n_pk = int(passkey_fraction / (1 - passkey_fraction) * n_corpus / mean_len)
        arrays += data.encode_docs(tokenizer, data.passkey_docs(n_pk, max_fillers, seed))
    random.Random(seed).shuffle(arrays)
    tokens, _ = data.pack(arrays, len(tokenizer))
    return tokens


def pretrain(spec: dict, token_files: list[str], tokenizer_dir: str, window: int, seed: int, work_dir: str,
             out: str, log_path: str | None = None) -> LlamaForCausalLM:
    tok = modeling.load_tokenizer(tokenizer_dir)
    tokens = mixture(token_files, tok, window, spec["passkey_fraction"], seed)
    cfg = modeling.base_config(spec["arch"], len(tok), window, tok.bos_token_id, tok.eos_token_id)
    import torch

    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    hp = dict(steps=spec["steps"], micro_batch=spec["micro_batch"], global_batch=spec["global_batch"], lr=spec["lr"],
              betas=[0.9, 0.95], weight_decay=0.0, warmup_steps=spec.get("warmup_steps", 50), warmup_start=0.1,
              schedule="cosine", min_lr_ratio=spec.get("min_lr_ratio", 0.1), seed=seed, log_every=50,
              resume_every=200)
    resume = train.prepare_work_dir(work_dir, {"spec": spec, "window": window, "seed": seed})
    trainer = train.build_trainer(model, train.Chunks(tokens, window), hp, work_dir, None, [], tokenizer_dir,
                                  log_path=log_path)
    trainer.train(resume_from_checkpoint=resume)
    modeling.save_checkpoint(model, tokenizer_dir, out)
    return model
