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

from .io import atomic_path

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


def load_model(path: str | Path, dtype=torch.float32) -> LlamaForCausalLM:
    """Load a checkpoint directory; fail with a message naming it if it is not a complete checkpoint."""
    path = Path(path)
    for name in ("config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint: {name} is missing")
    model = LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    return model


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


def init_extension(base_dir: str | Path, method: str, ctx: int, base_window: int, out: str | Path) -> LlamaForCausalLM:
    """Step 0 of an extension: the base weights under the extended config (for PI: scaling without training)."""
    base = load_model(base_dir)
    cfg = extended_config(base.config, method, ctx, base_window)
    model = LlamaForCausalLM(cfg)
    missing = model.load_state_dict(base.state_dict(), strict=False)
    unexpected = [k for k in missing.unexpected_keys if "rotary_emb" not in k]
    absent = [k for k in missing.missing_keys if "rotary_emb" not in k]
    if unexpected or absent:
        raise RuntimeError(f"weights of {base_dir} do not fit the extended model: missing {absent}, unexpected {unexpected}")
    save_checkpoint(model, base_dir, out)
    return model
