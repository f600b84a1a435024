"""Corpora, tokenizer, packed token arrays and the choice of evaluation documents."""
from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


BOS, EOS = "<s>", "</s>"


def iter_corpus(path: str | Path) -> Iterator[dict]:
    """Documents ``{"id", "split", "text"}`` of a JSON-lines corpus (optionally gzip-compressed), one at a time:
    a corpus larger than memory streams through. Malformed input is named (file:line) when it is reached."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file")
    n, found = 0, 0
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
                    raise ValueError(f"{path}:{n}: a document needs id, text and split train|test; "
                                     f"got keys {sorted(d)}")
                found += 1
                yield d
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError, OSError) as e:  # cut mid-stream, not gzip, not UTF-8
        raise ValueError(f"{path}: unreadable after line {n} ({type(e).__name__}: {e}); the file is truncated or "
                         "corrupt: fetch it again") from None
    if not found:
        raise ValueError(f"{path}: no documents")


def read_corpus(path: str | Path) -> list[dict]:
    """All documents of a corpus (``iter_corpus``), for corpora that fit in memory."""
    return list(iter_corpus(path))


def batches(docs: Iterable[dict], max_chars: int = 1 << 20) -> Iterator[list[dict]]:
    """Consecutive documents in groups of about ``max_chars`` characters (at least one document each)."""
    batch, size = [], 0
    for d in docs:
        batch.append(d)
        size += len(d["text"])
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


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


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 65535 else np.uint32


def pack(arrays: list[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents; return (tokens, offsets) with offsets[i]:offsets[i+1] the i-th document."""
    dtype = token_dtype(vocab_size)
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


def join_books(docs: list[dict]) -> list[dict]:
    """One document per book from its chapters: documents whose ids share the part before "/" joined in id order,
    separated by a blank line (``eval.join: book``: whole books, as PG19's, from a corpus split by chapter)."""
    books: dict[str, list[dict]] = {}
    for d in sorted(docs, key=lambda d: d["id"]):
        books.setdefault(d["id"].split("/", 1)[0], []).append(d)
    return [{"id": book, "split": parts[0]["split"], "text": "\n\n".join(p["text"] for p in parts)}
            for book, parts in books.items()]


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


def check_tokenizer(files: list[str | Path], tok, model: str | Path) -> None:
    """Refuse token files made by another tokenizer than the model's, before any model is loaded: a mismatch would
    otherwise be an index error inside the embedding, or silently wrong numbers with an equal vocabulary size.
    ``files``: packed training files (their index is read, never the tokens) or evaluation files (``save_docs``)."""
    want, size = tokenizer_digest(tok), len(tok)
    for f in files:
        made_by, top = _token_file_meta(f)
        if made_by and made_by != want:
            raise ValueError(f"{f} was tokenized by another tokenizer (vocabulary digest {made_by[:12]}) than the "
                             f"one of {model} ({want[:12]}): tokenize it with the model's tokenizer")
        if top >= size:
            raise ValueError(f"{f} holds token id {top}, beyond the vocabulary of {model} ({size} tokens): it was "
                             "tokenized by another tokenizer")


def _token_file_meta(f: str | Path) -> tuple[str, int]:
    """(digest of the tokenizer that made a token file, its largest token id)."""
    if Path(f).suffix == ".npy":
        with np.load(index_path(f), allow_pickle=False) as z:
            return str(z["tokenizer"]), int(z["max_id"])
    with np.load(f, allow_pickle=False) as z:
        tokens = z["tokens"]
        return (str(z["tokenizer"]) if "tokenizer" in z.files else ""), (int(tokens.max()) if tokens.size else -1)


# Packed training tokens: ``train.npy`` (the documents' tokens one after another, each opening with BOS) and its
# index ``train.idx.npz`` (document offsets, the tokenizer's digest, the largest id). The .npy is written as
# tokenization goes and memory-mapped by every training rank: neither ever holds the whole corpus in memory.

def index_path(tokens_path: str | Path) -> Path:
    """The index beside a packed token file: ``train.npy`` -> ``train.idx.npz``."""
    p = Path(tokens_path)
    return p.with_name(p.name.removesuffix(".npy") + ".idx.npz")


class PackedWriter:
    """Write packed documents as they come, in bounded memory.

    The .npy header is written first with length 0 and rewritten with the final length on close (numpy's header
    leaves room for the length to grow in place); the index is written on close. Use inside ``atomic_path``: an
    interrupted run leaves no file that could be taken for a result."""

    def __init__(self, path: str | Path, index: str | Path, vocab_size: int, tokenizer: str = ""):
        self.path, self.index, self.tokenizer = Path(path), Path(index), tokenizer
        self.dtype = np.dtype(token_dtype(vocab_size))
        self.offsets, self.max_id, self.min_len, self.max_len = [0], -1, None, 0
        self._f = open(self.path, "wb")
        self._header = self._write_header(0)

    def _write_header(self, length: int) -> int:
        self._f.seek(0)
        np.lib.format.write_array_header_1_0(self._f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                       "fortran_order": False, "shape": (length,)})
        return self._f.tell()

    def add(self, arrays: list[np.ndarray]) -> None:
        for a in arrays:
            top = int(a.max()) if len(a) else -1
            if top > np.iinfo(self.dtype).max:
                raise ValueError(f"token id {top} does not fit {self.dtype}")
            self._f.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())
            self.offsets.append(self.offsets[-1] + len(a))
            self.max_id = max(self.max_id, top)
            self.min_len = len(a) if self.min_len is None else min(self.min_len, len(a))
            self.max_len = max(self.max_len, len(a))

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0, 2)
        if self._write_header(self.offsets[-1]) != self._header:
            raise RuntimeError(f"{self.path}: the .npy header changed size")
        self._f.close()
        with open(self.index, "wb") as f:
            np.savez(f, offsets=np.asarray(self.offsets, dtype=np.int64), tokenizer=np.asarray(self.tokenizer),
                     max_id=np.asarray(self.max_id, dtype=np.int64))

    def stats(self) -> dict:
        return {"documents": len(self.offsets) - 1, "tokens": self.offsets[-1], "min_doc_tokens": self.min_len or 0,
                "max_doc_tokens": self.max_len}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._f.close()


def save_packed(path: str | Path, arrays: list[np.ndarray], vocab_size: int, tokenizer: str = "") -> None:
    """Packed documents held in memory (small corpora, tests), written as tokenization writes them."""
    with PackedWriter(path, index_path(path), vocab_size, tokenizer) as w:
        w.add(arrays)


def load_packed(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, memory-mapped read-only; document offsets) of a packed token file."""
    with np.load(index_path(path), allow_pickle=False) as z:
        offsets = z["offsets"]
    tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    if len(tokens) != offsets[-1]:
        raise ValueError(f"{path} has {len(tokens)} tokens, its index {index_path(path)} says {offsets[-1]}: "
                         "the two come from different runs; tokenize again")
    return tokens, offsets


def load_packed_docs(files: list[str | Path]) -> list[np.ndarray]:
    """The documents of packed token files, in file order, as views of the memory-mapped tokens."""
    arrays = []
    for f in files:
        tokens, offsets = load_packed(f)
        arrays += [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return arrays


class DocStream:
    """The documents of packed token files, shuffled with ``seed``, read as one token stream: ``stream[a:b]``
    gathers those tokens from the memory-mapped files. The same tokens as concatenating the shuffled documents,
    in memory proportional to the number of documents, not of tokens."""

    def __init__(self, files: list[str | Path], seed: int | None = None):
        self.parts, begins, lengths, owner = [], [], [], []
        for k, f in enumerate(files):
            tokens, offsets = load_packed(f)
            self.parts.append(tokens)
            begins.append(offsets[:-1])
            lengths.append(np.diff(offsets))
            owner.append(np.full(len(offsets) - 1, k, dtype=np.int32))
        self.dtype = np.result_type(*[p.dtype for p in self.parts]) if self.parts else np.dtype(np.uint16)
        order = list(range(sum(len(b) for b in begins)))
        if seed is not None:
            random.Random(seed).shuffle(order)  # the permutation random.shuffle gives a list of documents
        order = np.asarray(order, dtype=np.int64)
        self.begin = np.concatenate(begins or [np.zeros(0, np.int64)])[order]
        self.owner = np.concatenate(owner or [np.zeros(0, np.int32)])[order]
        self.cum = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(lengths or [np.zeros(0, np.int64)])[order], out=self.cum[1:])

    def __len__(self) -> int:
        return int(self.cum[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a DocStream is read by contiguous slices")
        a, b, _ = key.indices(len(self))
        pieces, d = [], int(np.searchsorted(self.cum, a, side="right")) - 1
        while a < b:
            take = min(b, int(self.cum[d + 1])) - a
            start = int(self.begin[d]) + a - int(self.cum[d])
            pieces.append(self.parts[self.owner[d]][start:start + take])
            a, d = a + take, d + 1
        return np.concatenate(pieces).astype(self.dtype, copy=False) if pieces else np.zeros(0, self.dtype)


def load_docs(path: str | Path) -> tuple[list[str], list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        tokens, offsets, ids = z["tokens"], z["offsets"], z["ids"]
    return [str(i) for i in ids], [tokens[offsets[k]:offsets[k + 1]].astype(np.int64) for k in range(len(ids))]

