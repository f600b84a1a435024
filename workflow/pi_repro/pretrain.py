"""Pretraining the default configuration's base model at window L (the stand-in for released LLaMA weights).

The data mixture is the training splits of the configured corpora plus passkey-format documents (see
``mixture``), so that the base model learns in-context retrieval within its own window.
"""
from __future__ import annotations

import random

import numpy as np
from transformers import LlamaForCausalLM

from . import data, modeling, passkey, train


def mixture(token_files: list[str], tokenizer, window: int, passkey_fraction: float, seed: int,
            passkey_docs: str = "paper") -> np.ndarray:
    """The pretraining token stream (cut into windows of L by ``train.Chunks``).

    ``passkey_docs: paper``: the paper's passkey prompt with whole filler sentences, answer appended, as many
    documents as make ``passkey_fraction`` of all tokens, shuffled and packed with the corpus documents. (At
    L = 128 the prompt leaves no room for a filler sentence, so the needle sits at one fixed distance.)
    ``passkey_docs: varied``: a fraction ``passkey_fraction`` of the sequences start with one document of
    ``passkey.training_ids`` (filler cut at token granularity, intro dropped half of the time: the distance from
    the needle to the question varies over the window), filled up with corpus text; every sequence is aligned
    to a window, so no passkey document is split from its question."""
    arrays = data.load_packed_docs(token_files)
    rng = random.Random(seed)
    if passkey_docs == "paper":
        n_corpus = sum(len(a) for a in arrays)
        if passkey_fraction > 0:
            fixed = len(data.encode_docs(tokenizer, [passkey.training_text(random.Random(seed), 0)])[0])
            filler = len(tokenizer(" " + passkey.FILLER, add_special_tokens=False)["input_ids"])
            max_fillers = max(0, (window - fixed) // filler)
            n_pk = int(passkey_fraction / (1 - passkey_fraction) * n_corpus / (fixed + filler * max_fillers / 2))
            pk_rng = random.Random(seed)
            arrays += data.encode_docs(tokenizer, [passkey.training_text(pk_rng, max_fillers) for _ in range(n_pk)])
        rng.shuffle(arrays)
        return data.pack(arrays, len(tokenizer))[0]
    if passkey_docs != "varied":
        raise ValueError(f"unknown passkey_docs {passkey_docs!r} (paper or varied)")
    rng.shuffle(arrays)
    stream, _ = data.pack(arrays, len(tokenizer))
    n_corpus = len(stream) // window
    seqs = [stream[i * window:(i + 1) * window] for i in range(n_corpus)]
    n_pk = round(passkey_fraction / (1 - passkey_fraction) * n_corpus)
    for _ in range(n_pk):
        doc = passkey.training_ids(tokenizer, rng, window)
        fill = rng.randrange(0, len(stream) - window)
        seqs.append(np.concatenate([np.asarray(doc), stream[fill:fill + window - len(doc)]]).astype(stream.dtype))
    rng.shuffle(seqs)
    return np.concatenate(seqs)


def pretrain(spec: dict, token_files: list[str], tokenizer_dir: str, window: int, seed: int, work_dir: str,
             out: str, log_path: str | None = None) -> LlamaForCausalLM:
    tok = modeling.load_tokenizer(tokenizer_dir)
    tokens = mixture(token_files, tok, window, spec["passkey_fraction"], seed, spec.get("passkey_docs", "paper"))
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
