"""Getting corpora and base weights: shipped files (sha256-verified) or pinned Hugging Face hub revisions.

Hub access needs network; a token, if the repository needs one, is read from the environment (``HF_TOKEN``)
and never written to logs or outputs. ``trust_remote_code`` is never used.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

from .io import atomic_path, sha256_file, verify_sha256

MODEL_FILES = ["*.json", "*.safetensors", "tokenizer.model"]


def fetch(spec: dict, out: str | Path) -> dict:
    """Write the corpus described by ``spec`` (a ``datasets`` config entry) to ``out`` (JSON lines, gzip)."""
    if spec["source"] == "local":
        src = Path(spec["path"])
        if not src.is_file():
            raise FileNotFoundError(f"dataset file {src} does not exist")
        verify_sha256(src, spec["sha256"])
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        return {"source": str(src), "sha256": spec["sha256"]}
    if spec["source"] == "hub":
        return fetch_hub(spec["hub"], out)
    raise ValueError(f"unknown dataset source {spec['source']!r}")


def fetch_hub(hub: dict, out: str | Path) -> dict:
    """A pinned hub dataset as documents. ``hub``: ``{id, revision, splits: {train: <split>, test: <split>},
    text_field, id_field, max_docs: {train: N}}``; documents past ``max_docs`` are not downloaded (streaming)."""
    import datasets

    token = os.environ.get("HF_TOKEN") or None
    n = 0
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        for split, hub_split in hub["splits"].items():
            ds = datasets.load_dataset(hub["id"], hub.get("config"), split=hub_split, revision=hub["revision"],
                                       streaming=True, token=token)
            limit = hub.get("max_docs", {}).get(split)
            for i, row in enumerate(ds):
                if limit is not None and i >= limit:
                    break
                doc_id = str(row.get(hub.get("id_field", ""), f"{hub_split}-{i}"))
                f.write(json.dumps({"id": doc_id, "split": split, "text": row[hub["text_field"]]}) + "\n")
                n += 1
    return {"source": f"hub:{hub['id']}@{hub['revision']}", "documents": n, "sha256": sha256_file(out)}


def verify_model_dir(path: str | Path) -> None:
    """Check every file listed in ``path/SHA256SUMS``; raise naming the first file that differs or is missing."""
    path = Path(path)
    sums = path / "SHA256SUMS"
    if not sums.is_file():
        raise FileNotFoundError(f"{path}: no SHA256SUMS, cannot verify the shipped model")
    for line in sums.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        f = path / name.strip()
        if not f.is_file():
            raise FileNotFoundError(f"{f} listed in {sums} is missing")
        verify_sha256(f, digest)


def fetch_model(spec: dict, out: str | Path) -> dict:
    """Copy shipped weights (verified) or download a pinned hub revision into ``out``."""
    if spec["source"] == "local":
        verify_model_dir(spec["path"])
        with atomic_path(out) as tmp:
            shutil.copytree(spec["path"], tmp)
        return {"source": spec["path"]}
    if spec["source"] == "hub":
        from huggingface_hub import snapshot_download

        token = os.environ.get("HF_TOKEN") or None
        with atomic_path(out) as tmp:
            snapshot_download(repo_id=spec["id"], revision=spec["revision"], local_dir=tmp, token=token,
                              allow_patterns=MODEL_FILES)
        return {"source": f"hub:{spec['id']}@{spec['revision']}"}
    raise ValueError(f"fetch_model cannot handle source {spec['source']!r}")
