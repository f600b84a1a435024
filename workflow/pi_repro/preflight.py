"""Checks of the files a run stands on, made while the DAG is built (common.smk), before any job starts and so
before Snakemake deletes any output it is about to rebuild: the local files the config names exist and are what
their sha256 says; the run's token files are whole (their size against their header, their offsets against their
index, the tokenizer that made them against the run's); counts fit what they count (documents asked of a split,
a fine-tune's tokens of its training files). Each problem names its file or key; all are reported at once.

Hashing is cached (``Sha256Cache``: a file's sha256 keyed by its size and modification time), so a DAG built
again reads no unchanged file twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import targets
from .io import sha256_file


class PreflightError(ValueError):
    """Files the run would read are missing or damaged (each named)."""


class Sha256Cache:
    """sha256 of files, remembered by (absolute path, size, mtime) in a JSON file (``path=None``: in memory)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.data, self.dirty = {}, False
        if self.path and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}

    def sha256(self, f: str | Path) -> str:
        st = os.stat(f)
        key, stamp = str(Path(f).resolve()), [st.st_size, st.st_mtime_ns]
        hit = self.data.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        digest = sha256_file(f)
        self.data[key], self.dirty = stamp + [digest], True
        return digest

    def remember(self, key: str, stamp: list, value: str) -> None:
        self.data[key], self.dirty = list(stamp) + [value], True

    def recall(self, key: str, stamp: list) -> str | None:
        hit = self.data.get(key)
        return hit[-1] if hit and hit[:-1] == list(stamp) else None

    def save(self) -> None:
        if self.path and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)
            self.dirty = False


# ------------------------------------------------------------------------------------------ local inputs
def local_problems(cfg: dict, cache: Sha256Cache) -> list[str]:
    """The local files the config names: each dataset file (its sha256), each shipped model folder (every file
    its SHA256SUMS lists, by sha256), the published cells a table quotes, the task folder the harness includes,
    the paper's cells the audit compares."""
    out = []
    for name, d in cfg["datasets"].items():
        if d["source"] != "local":
            continue
        where, p = f"datasets.{name}.path", Path(d["path"])
        if not p.is_file():
            out.append(f"{where}: {p} does not exist (run Snakemake from the repository, or give an absolute path)")
        elif cache.sha256(p) != d["sha256"]:
            out.append(f"{where}: {p} has sha256 {cache.sha256(p)}, the config says {d['sha256']} (another file "
                       "than the one the config pins)")
    for size, s in cfg["sizes"].items():
        b = s["base"]
        if b["source"] == "local":
            out += model_dir_problems(f"sizes.{size}.base.path", Path(b["path"]), cache)
    named = [(f"tables.{t}.quoted", spec.get("quoted")) for t, spec in cfg.get("tables", {}).items()]
    named += [("benchmarks.include", cfg.get("benchmarks", {}).get("include")),
              ("audit.paper", (cfg.get("audit") or {}).get("paper"))]
    out += [f"{where}: {p} does not exist" for where, p in named if p and not Path(p).exists()]
    return out


def model_dir_problems(where: str, path: Path, cache: Sha256Cache) -> list[str]:
    sums = path / "SHA256SUMS"
    if not path.is_dir():
        return [f"{where}: {path} is not a folder"]
    if not sums.is_file():
        return [f"{where}: {path} has no SHA256SUMS (a shipped model lists the sha256 of each of its files)"]
    out = []
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        f = path / name.strip()
        if not f.is_file():
            out.append(f"{where}: {f}, listed in {sums}, is missing")
        elif cache.sha256(f) != digest:
            out.append(f"{where}: {f} has sha256 {cache.sha256(f)}, {sums} says {digest}")
    return out


# ------------------------------------------------------------------------------------------ token files
def npy_problem(path: Path) -> str | None:
    """A .npy file whose size disagrees with its header (truncated, or grown), or whose header is unreadable."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            header = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        return f"{path}: not a readable .npy file ({e})"
    want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != want:
        return (f"{path}: {size} bytes, its header says {want} ({shape[0] if shape else 0} tokens of {dtype}): the "
                "file is truncated or damaged")
    return None


def token_file_problems(tokens: Path, tokenizer_digest: str | None) -> list[str]:
    """A packed training file and its index: both readable, the offsets ending at the file's length and never
    going back, made by the tokenizer with digest ``tokenizer_digest`` (when given)."""
    from .data import index_path

    problem = npy_problem(tokens)
    if problem:
        return [problem]
    index = index_path(tokens)
    if not index.is_file():
        return [f"{index}: missing (the index of {tokens})"]
    try:
        with np.load(index, allow_pickle=False) as z:
            offsets, made_by = z["offsets"], str(z["tokenizer"])
    except (ValueError, OSError, KeyError) as e:
        return [f"{index}: not a readable index ({e})"]
    n = np.load(tokens, mmap_mode="r", allow_pickle=False).shape[0]
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        return [f"{index}: its offsets ({len(offsets)} of them, ending at {offsets[-1] if len(offsets) else '-'}) do "
                f"not describe {tokens} ({n} tokens): the two come from different runs or one is damaged"]
    if tokenizer_digest and made_by and made_by != tokenizer_digest:
        return [f"{tokens}: tokenized by another tokenizer (vocabulary digest {made_by[:12]}) than the run's "
                f"({tokenizer_digest[:12]})"]
    return []


def eval_file_problems(path: Path, tokenizer_digest: str | None) -> list[str]:
    """An evaluation documents file (``data.save_docs``): readable, offsets within its tokens, its tokenizer."""
    try:
        with np.load(path, allow_pickle=False) as z:
            n, offsets, ids = len(z["tokens"]), z["offsets"], z["ids"]
            made_by = str(z["tokenizer"]) if "tokenizer" in z.files else ""
    except Exception as e:  # a damaged zip raises zipfile.BadZipFile, EOFError, ValueError ...
        return [f"{path}: not a readable evaluation file ({type(e).__name__}: {e})"]
    if len(offsets) != len(ids) + 1 or (len(offsets) and (offsets[-1] != n or np.any(np.diff(offsets) < 0))):
        return [f"{path}: its offsets do not describe its {n} tokens of {len(ids)} documents: damaged"]
    if tokenizer_digest and made_by and made_by != tokenizer_digest:
        return [f"{path}: tokenized by another tokenizer (vocabulary digest {made_by[:12]}) than the run's "
                f"({tokenizer_digest[:12]})"]
    return []


def tokenizer_digest(folder: Path, cache: Sha256Cache) -> str | None:
    """The vocabulary digest (``data.tokenizer_digest``) of the tokenizer in ``folder``, cached by its files' sha256
    (loading a tokenizer is the slow part); None if the folder holds none yet."""
    files = sorted(f for f in folder.glob("*") if f.is_file() and (f.name.startswith("tokenizer") or
                                                                  f.name == "special_tokens_map.json"))
    if not files:
        return None
    stamp = [f.name for f in files] + [cache.sha256(f) for f in files]
    key = "tokenizer-digest"  # by content: the same tokenizer files in another run's folder hit too
    hit = cache.recall(f"{key}:{':'.join(stamp)}", [])
    if hit:
        return hit
    from .data import tokenizer_digest as digest
    from .modeling import load_tokenizer

    value = digest(load_tokenizer(folder))
    cache.remember(f"{key}:{':'.join(stamp)}", [], value)
    return value


def _newest(paths: list[Path]) -> float:
    times = [f.stat().st_mtime for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*"))
             if f.is_file()]
    return max(times, default=0.0)


def run_data_problems(run_dir: str | Path, tokenizers: dict[str, Path], cache: Sha256Cache) -> list[str]:
    """Every token file of a run that Snakemake would take as up to date (``{run}/data/{dataset}/{tokenizer}/``,
    newer than its corpus and its tokenizer): training files and their indexes, evaluation files. One older than
    its inputs is about to be rebuilt and is not checked. ``tokenizers``: tokenizer name → the folder of the
    tokenizer that makes its files."""
    out = []
    for tok_name, folder in tokenizers.items():
        digest = tokenizer_digest(folder, cache) if folder.is_dir() else None
        for kind, check in (("train.npy", token_file_problems), ("eval.npz", eval_file_problems)):
            for f in sorted(Path(run_dir, "data").glob(f"*/{tok_name}/{kind}")):
                if f.stat().st_mtime >= _newest([f.parents[1] / "corpus.jsonl.gz", folder]):
                    out += check(f, digest)
    return out


# ------------------------------------------------------------------------------------------ counts
def split_counts(path: Path, cache: Sha256Cache) -> dict[str, int]:
    """Documents per split of a local corpus (cached by the file's sha256)."""
    digest = cache.sha256(path)
    hit = cache.recall(f"split-counts:{digest}", [])
    if hit:
        return json.loads(hit)
    from .data import iter_corpus

    counts = {}
    for doc in iter_corpus(path):
        counts[doc["split"]] = counts.get(doc["split"], 0) + 1
    cache.remember(f"split-counts:{digest}", [], json.dumps(counts))
    return counts


def count_problems(cfg: dict, run_dir: str | Path, tokenizer_of: dict[str, str], cache: Sha256Cache) -> list[str]:
    """Counts against the data they count: a local dataset's evaluation documents and a summarization table's
    train / test documents against its splits; each fine-tune's tokens (steps x batch x L') against its training
    files, where they exist and are up to date (``tokenizer_of``: size -> its tokenizer's name)."""
    from .kinds import KINDS

    out, counts = [], {}
    for name, d in cfg["datasets"].items():
        if d["source"] == "local" and Path(d["path"]).is_file() and cache.sha256(d["path"]) == d["sha256"]:
            counts[name] = split_counts(Path(d["path"]), cache)
    for name, c in counts.items():
        want = (cfg["datasets"][name].get("eval") or {}).get("num_docs")
        if want and want > c.get("test", 0) and (cfg["datasets"][name]["eval"].get("join") != "book"):
            out.append(f"datasets.{name}.eval.num_docs: {want} evaluation documents asked, the test split of "
                       f"{cfg['datasets'][name]['path']} has {c.get('test', 0)}")
    for table in cfg.get("tables", {}).values():  # each kind's own counts (a summarization table's splits)
        out += KINDS[table["kind"]].preflight(cfg, table, counts)
    from .data import index_path

    for i, ext in enumerate(cfg["extensions"]):
        files = [Path(run_dir, "data", ds, tokenizer_of[ext["size"]], "train.npy")
                 for ds in ext.get("data", cfg["finetune_data"])]
        if not all(f.is_file() and index_path(f).is_file() and not npy_problem(f) for f in files):
            continue
        if any(f.stat().st_mtime < _newest([f.parents[1] / "corpus.jsonl.gz"]) for f in files):
            continue  # about to be rebuilt
        have = sum(np.load(f, mmap_mode="r", allow_pickle=False).shape[0] for f in files)
        hp = targets.train_hparams(cfg, ext)
        need = hp["steps"] * hp["global_batch"] * ext["ctx"]
        if need > have:
            out.append(f"extensions[{i}] ({ext['method']}-{ext['ctx']}): {hp['steps']} steps x {hp['global_batch']} "
                       f"sequences x {ext['ctx']} tokens need {need} training tokens; "
                       f"{', '.join(str(f) for f in files)} hold {have}")
    return out


def check(cfg: dict, run_dir: str | Path, tokenizers: dict[str, Path], tokenizer_of: dict[str, str],
          cache: Sha256Cache) -> None:
    """Raise ``PreflightError`` listing every problem found (local inputs, the run's token files, counts)."""
    problems = local_problems(cfg, cache) + run_data_problems(run_dir, tokenizers, cache)
    problems += count_problems(cfg, run_dir, tokenizer_of, cache)
    cache.save()
    if problems:
        raise PreflightError("files this run reads are missing or damaged (nothing was run, nothing deleted):\n  "
                             + "\n  ".join(problems) + "\nRestore them, or delete a damaged file of results/ to have "
                             "its job rebuild it")
