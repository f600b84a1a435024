"""Atomic writes and checksums: nothing half-written is ever taken for a result."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint: ``model.safetensors`` or the shards named by its index."""
    d = Path(model_dir)
    if (d / "model.safetensors").is_file():
        return [d / "model.safetensors"]
    index = d / "model.safetensors.index.json"
    if index.is_file():
        return [d / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return []


def sha256_weights(model_dir: str | Path) -> str | None:
    """One digest of a checkpoint's weights (the file itself, or the shards' digests hashed in order)."""
    files = weight_files(model_dir)
    if len(files) == 1:
        return sha256_file(files[0])
    if not files:
        return None
    return hashlib.sha256("".join(f"{sha256_file(f)}  {f.name}\n" for f in files).encode()).hexdigest()


def verify_sha256(path: str | Path, expected: str | None) -> str:
    """Return the file's sha256; raise ``ValueError`` naming the file when it differs from ``expected``."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")
    return actual


KILL_ENV = "PI_REPRO_INJECT_KILL_WRITING"  # tests: SIGKILL the process between writing this file and renaming it


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; move it into place only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if os.environ.get(KILL_ENV) and os.environ[KILL_ENV] == path.name:  # fault injection (tests)
            import signal

            os.kill(os.getpid(), signal.SIGKILL)  # written, not yet in place: as a kill at the worst moment
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


HTML_STYLE = ("body{font-family:sans-serif;max-width:80em;margin:1em auto;padding:0 1em}"
              "table{border-collapse:collapse;margin:1em 0}"
              "td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}"
              "th{background:#eee}td:first-child,th:first-child{text-align:left}")


def write_html(path: str | Path, markdown_text: str, title: str) -> None:
    """A Markdown text (tables included) as one self-contained HTML page, written atomically: what Snakemake's
    report shows of the tables, the findings and the audit."""
    import html

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
    with atomic_path(path) as tmp:
        tmp.write_text(page)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def input_device(model):
    """Where a model's input ids go: its input embedding's execution device. For a model spread over devices
    (``device_map``, accelerate's hooks) that is the first device of the map, not the first parameter's, which
    is ``meta`` for offloaded weights."""
    emb = model.get_input_embeddings()
    hook = getattr(emb, "_hf_hook", None)
    if getattr(hook, "execution_device", None) is not None:
        import torch

        return torch.device(hook.execution_device)
    return emb.weight.device


def reset_dynamic_rope(model) -> None:
    """Return a dynamic RoPE (dynamic NTK) to its state at load: transformers keeps the frequencies of the longest
    sequence seen and reuses them for a shorter one that is still past L, so a window's result would depend on the
    windows evaluated before it. Called before each window (perplexity, passkey); other RoPE types: nothing."""
    for m in model.modules():
        if getattr(m, "rope_type", None) == "dynamic" and hasattr(m, "original_inv_freq"):
            m.register_buffer("inv_freq", m.original_inv_freq.clone(), persistent=False)
            m.max_seq_len_cached = m.original_max_seq_len


def model_dir_digest(path: str | Path) -> str | None:
    """The digest that stands for a shipped model folder's content: the sha256 of its SHA256SUMS (None if absent)."""
    sums = Path(path) / "SHA256SUMS"
    return sha256_file(sums) if sums.is_file() else None
