"""Corpora, tokenizer, packed token arrays and the choice of evaluation documents."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np


BOS, EOS = "<s>", "</s>"


def read_corpus(path: str | Path) -> list[dict]:
    """Documents ``{"id", "split", "text"}`` of a JSON-lines corpus (optionally gzip-compressed)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file")
    docs, n = [], 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
                missing = {"id", "split", "text"} - set(d)
                if missing or d["split"] not in ("train", "test"):
                    raise ValueError(f"{path}:{n}: a document needs id, text and split train|test; got keys {sorted(d)}")
                docs.append(d)
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError, OSError) as e:  # cut mid-stream, not gzip, not UTF-8
        raise ValueError(f"{path}: unreadable after line {n} ({type(e).__name__}: {e}); the file is truncated or "
                         "corrupt: fetch it again") from None
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


def train_tokenizer(texts, vocab_size: int, out_dir: str | Path) -> None:
    """Byte-level BPE with digits split one by one (as LLaMA's tokenizer does), saved for AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    fast.save_pretrained(str(out_dir))


def encode_docs(tokenizer, texts: list[str], add_bos: bool = True) -> list[np.ndarray]:
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    return [np.asarray(bos + x, dtype=np.int64) for x in ids]


def pack(arrays: list[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents; return (tokens, offsets) with offsets[i]:offsets[i+1] the i-th document."""
    dtype = np.uint16 if vocab_size <= 65535 else np.uint32
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    tokens = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)
    return tokens, offsets


def select_eval_docs(ids: list[str], arrays: list[np.ndarray], style: str, seed: int, num_docs: int | None = None,
                     doc_tokens: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Evaluation documents chosen as the paper does.

    ``proofpile``: ``num_docs`` documents drawn with ``seed`` among those with at least ``doc_tokens`` tokens,
    each truncated to its first ``doc_tokens`` tokens. ``pg19``: whole documents (all of them, or ``num_docs``
    drawn with ``seed`` when a budget is set).
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    rng = random.Random(seed)
    if style == "proofpile":
        eligible = [i for i in order if len(arrays[i]) >= doc_tokens]
        if len(eligible) < num_docs:
            raise ValueError(f"only {len(eligible)} test documents have >= {doc_tokens} tokens, {num_docs} requested")
        chosen = sorted(rng.sample(eligible, num_docs), key=lambda i: ids[i])
        return [ids[i] for i in chosen], [arrays[i][:doc_tokens] for i in chosen]
    if style == "pg19":
        chosen = order if num_docs is None else sorted(rng.sample(order, min(num_docs, len(order))),
                                                        key=lambda i: ids[i])
        return [ids[i] for i in chosen], [arrays[i] for i in chosen]
    raise ValueError(f"unknown evaluation style {style!r}")


def tokenizer_digest(tok) -> str:
    """sha256 of a tokenizer's vocabulary (token → id) and special tokens: what makes token ids mean the same."""
    import hashlib

    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    special = [tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token]
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()


def save_docs(path: str | Path, ids: list[str], arrays: list[np.ndarray], vocab_size: int,
              tokenizer: str = "") -> None:
    """Packed documents, with the digest of the tokenizer that made them (checked against the model's)."""
    tokens, offsets = pack(arrays, vocab_size)
    with open(path, "wb") as f:
        np.savez(f, tokens=tokens, offsets=offsets, ids=np.asarray(ids, dtype=str), tokenizer=np.asarray(tokenizer))


def check_tokenizer(files: list[str | Path], tok, model: str | Path, tokens: np.ndarray | None = None) -> None:
    """Refuse token files made by another tokenizer than the model's, before any model is loaded: a mismatch would
    otherwise be an index error inside the embedding, or silently wrong numbers with an equal vocabulary size.
    ``tokens``: the files' tokens when the caller has loaded them already (their ids are checked there, not read
    from the files a second time)."""
    want, size = tokenizer_digest(tok), len(tok)
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            made_by = str(z["tokenizer"]) if "tokenizer" in z.files else ""
            ids = z["tokens"] if tokens is None else None
        if made_by and made_by != want:
            raise ValueError(f"{f} was tokenized by another tokenizer (vocabulary digest {made_by[:12]}) than the "
                             f"one of {model} ({want[:12]}): tokenize it with the model's tokenizer")
        if ids is not None:
            _check_ids(ids, size, f, model)
    if tokens is not None:
        _check_ids(tokens, size, ", ".join(map(str, files)), model)


def _check_ids(ids: np.ndarray, size: int, where: str, model: str | Path) -> None:
    top = int(ids.max()) if ids.size else -1
    if top >= size:
        raise ValueError(f"{where} holds token id {top}, beyond the vocabulary of {model} ({size} tokens): it was "
                         "tokenized by another tokenizer")


def load_packed_docs(files: list[str | Path]) -> list[np.ndarray]:
    """The documents of packed token files (``tokens``, ``offsets``), in file order, with their stored dtype."""
    arrays = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            tokens, offsets = z["tokens"], z["offsets"]
        arrays += [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return arrays


def load_docs(path: str | Path) -> tuple[list[str], list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        tokens, offsets, ids = z["tokens"], z["offsets"], z["ids"]
    return [str(i) for i in ids], [tokens[offsets[k]:offsets[k + 1]].astype(np.int64) for k in range(len(ids))]

