"""Model construction: the base LLaMA model and its extensions (PI, FT, CT) -- behaviour from config only.

* ``PI``  (Position Interpolation): ``rope_parameters = {"rope_type": "linear", "factor": s, "rope_theta": θ}``,
  i.e. transformers' own linear RoPE scaling, which divides every position index by s = L'/L.
* ``FT``  (direct fine-tuning): positions untouched, only the nominal window grows to L'.
* ``CT``  (control): the base model trained further at its own window L; no change at all.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .io import atomic_path, weight_files

METHODS = ("PI", "FT", "CT")


def base_config(arch: dict, vocab_size: int, window: int, bos_token_id=None, eos_token_id=None) -> LlamaConfig:
    """A LLaMA config for a model pretrained here at window ``window`` (the default configuration's base)."""
    theta = float(arch.get("rope_theta", 10000.0))
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"],
        num_key_value_heads=arch.get("num_kv_heads", arch["num_heads"]),
        max_position_embeddings=window,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        attn_implementation="sdpa",
    )


def rope_theta(config: LlamaConfig) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def extended_config(base: LlamaConfig, method: str, ctx: int, base_window: int) -> LlamaConfig:
    """The config of ``base`` extended to window ``ctx`` by ``method`` (see module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown extension method {method!r}; expected one of {METHODS}")
    if ctx < base_window:
        raise ValueError(f"extended window {ctx} is smaller than the base window {base_window}")
    cfg = LlamaConfig.from_dict(base.to_dict())
    theta = rope_theta(base)
    if method == "PI":
        cfg.rope_parameters = {"rope_type": "linear", "factor": ctx / base_window, "rope_theta": theta}
        cfg.max_position_embeddings = ctx
    elif method == "FT":
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": theta}
        cfg.max_position_embeddings = ctx
    else:  # CT keeps everything, including the window it was trained at
        if ctx != base_window:
            cfg.max_position_embeddings = base_window
    cfg._attn_implementation = "sdpa"
    return cfg


def scale_factor(config: LlamaConfig) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("factor", 1.0)) if params.get("rope_type") == "linear" else 1.0


def load_model(path: str | Path, dtype=torch.float32, device_map=None) -> LlamaForCausalLM:
    """Load a checkpoint directory; fail with a message naming it if it is not a complete checkpoint.
    ``device_map="auto"`` spreads a large model over the visible GPUs (evaluation of the paper's 33B/65B)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint: config.json is missing")
    if not weight_files(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint: model.safetensors is missing "
                                "(nor model.safetensors.index.json with its shards)")
    model = LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa", device_map=device_map)
    model.eval()
    return model


# ------------------------------------------------------------------------------------------ export probe
# A fixed input and the logits the training-time model gave for it, stored beside every exported checkpoint.
# Reloading the checkpoint must reproduce them: a silently dropped scaling factor, a wrong dtype or a bad
# ZeRO-3 consolidation changes them (checked after fine-tuning and again before every evaluation).
PROBE_FILE = "probe.safetensors"
PROBE_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}


def probe_batch(vocab_size: int, length: int, n_keep: int = 16, seed: int = 0):
    """Token ids ``(1, length)`` and the positions whose logits are kept (spread over the window, last included)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab_size, (1, length), generator=g)
    keep = torch.linspace(0, length - 1, steps=min(n_keep, length)).round().long().unique()
    return ids, keep


@torch.no_grad()
def probe_logits(model, ids: torch.Tensor, keep: torch.Tensor, device=None) -> torch.Tensor:
    """Logits at positions ``keep`` (works on a plain model and on a ZeRO-3-partitioned one: call on all ranks)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = model(input_ids=ids.to(device), logits_to_keep=keep.to(device), use_cache=False)
    model.train(was_training)
    return out.logits.float().cpu()


def write_probe(out_dir: str | Path, ids, keep, logits, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    save_file({"input_ids": ids.contiguous(), "keep": keep.contiguous(), "logits": logits.contiguous()},
              str(Path(out_dir) / PROBE_FILE), metadata={"dtype": str(dtype).removeprefix("torch.")})


def record_probe(model, out_dir: str | Path, ctx: int, device=None, max_len: int = 1024, write: bool = True) -> None:
    """Run the probe through ``model`` (on every rank under ZeRO-3) and, where ``write``, store it in ``out_dir``."""
    ids, keep = probe_batch(model.config.vocab_size, min(ctx, max_len))
    logits = probe_logits(model, ids, keep, device)
    if write:
        write_probe(out_dir, ids, keep, logits, next(model.parameters()).dtype)


def verify_probe(model, ckpt_dir: str | Path) -> float | None:
    """Compare ``model`` (loaded from ``ckpt_dir``) with the logits recorded at export time.

    Returns the error max|Δ| / std(recorded), or None when the checkpoint has no probe (a base model).
    Raises naming the checkpoint when the error exceeds the tolerance of the coarser of the two dtypes."""
    from safetensors import safe_open

    path = Path(ckpt_dir) / PROBE_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        recorded_dtype = f.metadata().get("dtype", "float32")
        ids, keep, want = f.get_tensor("input_ids"), f.get_tensor("keep"), f.get_tensor("logits")
    got = probe_logits(model, ids, keep)
    err = float((got - want).abs().max() / want.std().clamp_min(1e-6))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    tol = max(PROBE_TOLERANCE.get(dtype, 5e-2), PROBE_TOLERANCE.get(recorded_dtype, 5e-2))
    if not err <= tol:
        raise RuntimeError(f"{ckpt_dir}: reloaded model does not reproduce the logits recorded at export "
                           f"(error {err:.3g} > {tol:g}); rope_parameters={model.config.rope_parameters}")
    return err


def load_tokenizer(path: str | Path):
    return AutoTokenizer.from_pretrained(str(path))


def copy_tokenizer(src: str | Path | None, dst: str | Path) -> None:
    """Copy the tokenizer files of a model directory (the tokenizer travels with every checkpoint)."""
    if src is None:
        return
    for f in Path(src).iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy2(f, Path(dst) / f.name)


def save_checkpoint(model, tokenizer_dir: str | Path | None, out: str | Path) -> None:
    """Write model (safetensors + config) and tokenizer into ``out`` atomically."""
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        copy_tokenizer(tokenizer_dir, tmp)


def init_extension(base_dir: str | Path, method: str, ctx: int, base_window: int, out: str | Path) -> LlamaConfig:
    """Step 0 of an extension: the base weights, unchanged, under the extended config (for PI: scaling without
    training). The weight files are copied, not loaded, so this costs no memory even for 65B."""
    base_dir = Path(base_dir)
    files = weight_files(base_dir)
    if not (base_dir / "config.json").is_file() or not files:
        raise FileNotFoundError(f"{base_dir} is not a complete checkpoint (config.json and safetensors weights)")
    cfg = extended_config(LlamaConfig.from_pretrained(base_dir), method, ctx, base_window)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        cfg.save_pretrained(tmp)
        for f in files + [base_dir / "model.safetensors.index.json", base_dir / "generation_config.json"]:
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        copy_tokenizer(base_dir, tmp)
    return cfg
