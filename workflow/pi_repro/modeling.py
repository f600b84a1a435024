"""Model construction: the base LLaMA model and its extensions -- behaviour from config only. Each method's RoPE
parameters are its entry in pi_repro.methods (transformers' own RoPE types, e.g. PI: ``{"rope_type": "linear",
"factor": s, "rope_theta": θ}``, which divides every position index by s = L'/L).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from . import methods
from .methods import METHODS
from .io import atomic_path, input_device, read_json, sha256_weights, weight_files, write_json


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


def head_dim(config: LlamaConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def extended_config(base: LlamaConfig, method: str, ctx: int, base_window: int) -> LlamaConfig:
    """The config of ``base`` extended to window ``ctx`` by ``method``: the method's RoPE parameters and window
    (pi_repro.methods), and, for the methods whose checkpoint gate needs it, the extension it records."""
    if method not in METHODS:
        raise ValueError(f"unknown extension method {method!r}; expected one of {tuple(METHODS)}")
    if ctx < base_window:
        raise ValueError(f"extended window {ctx} is smaller than the base window {base_window}")
    m = METHODS[method]
    cfg = LlamaConfig.from_dict(base.to_dict())
    theta = rope_theta(base)
    cfg.rope_parameters = m.rope(theta, base_window, ctx, head_dim(base))
    cfg.max_position_embeddings = m.positions(base_window, ctx)
    if m.records_extension:
        cfg.extension = {"method": method, "base_window": base_window, "ctx": ctx, "base_rope_theta": theta}
    cfg._attn_implementation = "sdpa"
    return cfg


def scale_factor(config: LlamaConfig) -> float:
    """The factor s of the config's RoPE scaling (PI, dynamic NTK, YaRN), 1 without one (NTK-aware changes the
    base instead)."""
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("factor", 1.0)) if params.get("rope_type", "default") != "default" else 1.0


def check_scaling(config: LlamaConfig, method: str, ctx: int, base_window: int) -> float:
    """The checkpoint gate on a loaded config (pi_repro.methods.check): the RoPE parameters ``method`` gives at
    window ``ctx`` from L, or none for the base model (method "None"); raises naming both if the config says
    otherwise. Returns the scaling factor."""
    methods.check(config.to_dict(), method, ctx, base_window)
    return scale_factor(config)


def load_model(path: str | Path, dtype=torch.float32, device_map=None) -> LlamaForCausalLM:
    """Load a checkpoint directory; fail with a message naming it if it is not a complete checkpoint.
    ``device_map="auto"`` spreads a large model over the visible GPUs (evaluation of the paper's 33B/65B)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint: config.json is missing")
    if not weight_files(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint: model.safetensors is missing "
                                "(nor model.safetensors.index.json with its shards)")
    model = LlamaForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa", device_map=device_map,
                                             use_safetensors=True)  # never a pickle
    model.eval()
    return model


# ------------------------------------------------------------------------------------------ export probe
# A fixed input and the logits the model gave for it when the checkpoint was written, stored beside every
# checkpoint. Reloading the checkpoint must reproduce them: a silently dropped scaling factor, replaced weights or
# a bad ZeRO-3 consolidation changes them (checked after fine-tuning and again before every evaluation).
#
# The error is the relative RMS of the difference, ||got - want|| / ||want - mean(want)|| over the kept logits (a
# maximum over ~10^6 logits grows with the vocabulary and the number of positions kept; the RMS does not). A
# probe is recorded where and how evaluations load the checkpoint (``eval_placement``: bf16 spread over the GPUs
# on a GPU node, fp32 on CPU), so the check compares like with like; the bound is that of the coarser of the two
# dtypes, for a probe read in another dtype or by other kernels. Measured here (tests/test_gpu_contact.py, README
# "How a run proceeds") on SmolLM2-135M (30 layers) and the shipped 4-layer mini model at their PI probes:
#   same dtype, same kernels: 0; bf16 sdpa vs bf16 eager attention: 0.052 / 0.007; bf16 vs fp32: 0.090 / 0.006;
#   fp16 vs fp32: 0.008 / 0.001.  A dropped PI scaling: 0.53 / 0.37 (any dtype); a replaced layer: >= 0.56.
# The bf16 bound 0.2 is 2.2x the largest precision error measured and 1.85x below the smallest failure.
PROBE_FILE = "probe.safetensors"
PROBE_TOLERANCE = {"float32": 1e-3, "float16": 0.03, "bfloat16": 0.2}


def eval_placement() -> tuple[torch.dtype, str | None]:
    """(dtype, device_map) an evaluation loads a checkpoint with: bf16 spread over the node's GPUs where there
    are any (33B/65B need several), fp32 on CPU. Sealing records its probe the same way."""
    return (torch.bfloat16, "auto") if torch.cuda.is_available() else (torch.float32, None)


def probe_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative RMS error of probe logits: ||got - want|| / ||want - its mean over the vocabulary||."""
    got, want = got.double(), want.double()
    return float((got - want).norm() / (want - want.mean(-1, keepdim=True)).norm().clamp_min(1e-12))


def probe_batch(vocab_size: int, length: int, n_keep: int = 16, seed: int = 0):
    """Token ids ``(1, length)`` and the positions whose logits are kept (spread over the window, last included)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab_size, (1, length), generator=g)
    keep = torch.linspace(0, length - 1, steps=min(n_keep, length)).round().long().unique()
    return ids, keep


@torch.no_grad()
def probe_logits(model, ids: torch.Tensor, keep: torch.Tensor, device=None) -> torch.Tensor:
    """Logits at positions ``keep`` (works on a plain model and on a ZeRO-3-partitioned one: call on all ranks)."""
    device = device or input_device(model)
    was_training = model.training
    model.eval()
    out = model(input_ids=ids.to(device), logits_to_keep=keep.to(device), use_cache=False)
    model.train(was_training)
    return out.logits.float().cpu()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def write_probe(out_dir: str | Path, ids, keep, logits, dtype: torch.dtype, device: str = "cpu") -> None:
    from safetensors.torch import save_file

    save_file({"input_ids": ids.contiguous(), "keep": keep.contiguous(), "logits": logits.contiguous()},
              str(Path(out_dir) / PROBE_FILE), metadata={"dtype": _dtype_name(dtype), "device": device})


def record_probe(model, out_dir: str | Path, ctx: int, device=None, max_len: int = 1024, write: bool = True) -> None:
    """Run the probe through ``model`` (on every rank under ZeRO-3) and, where ``write``, store it in ``out_dir``."""
    ids, keep = probe_batch(model.config.vocab_size, min(ctx, max_len))
    logits = probe_logits(model, ids, keep, device)
    if not torch.isfinite(logits).all():  # non-finite weights: never exported as a result
        raise FloatingPointError(f"{out_dir}: the model's logits are not finite; this checkpoint is not written")
    if write:
        write_probe(out_dir, ids, keep, logits, next(model.parameters()).dtype, torch.device(device or
                    input_device(model)).type)


def verify_probe(model, ckpt_dir: str | Path) -> float:
    """Compare ``model`` (loaded from ``ckpt_dir``) with the logits recorded when the checkpoint was written.

    Returns the error (``probe_error``). Raises naming the checkpoint when the probe is missing or the error
    exceeds the tolerance of the coarser of the two dtypes (PROBE_TOLERANCE)."""
    from safetensors import safe_open

    path = Path(ckpt_dir) / PROBE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt_dir}: {PROBE_FILE} is missing, so the checkpoint cannot be checked against "
                                "the logits recorded when it was written")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        ids, keep, want = f.get_tensor("input_ids"), f.get_tensor("keep"), f.get_tensor("logits")
    got = probe_logits(model, ids, keep)
    err = probe_error(got, want)
    recorded = f"{meta.get('dtype', 'float32')} on {meta.get('device', 'cpu')}"
    dtype = _dtype_name(next(model.parameters()).dtype)
    tol = max(PROBE_TOLERANCE.get(dtype, 0.2), PROBE_TOLERANCE.get(meta.get("dtype", "float32"), 0.2))
    if not err <= tol:
        raise RuntimeError(f"{ckpt_dir}: reloaded model does not reproduce the logits recorded when it was written "
                           f"(relative RMS error {err:.3g} > {tol:g}; recorded in {recorded}, read in {dtype} on "
                           f"{input_device(model).type}); rope_parameters={model.config.rope_parameters}")
    return err


# ------------------------------------------------------------------------------------- checkpoint records
# Every checkpoint an evaluation reads is verified first (``load_verified``): its weights against a sha256
# recorded when it was written, its logits against its probe. Fine-tuning exports (step N > 0) are recorded in
# their run's finetune.json; the base model and step 0 of an extension carry their own record (RECORD_FILE,
# written by ``seal_checkpoint`` in the job that writes them).
RECORD_FILE = "checkpoint.json"


def checkpoint_dtype(path: str | Path) -> torch.dtype:
    """The dtype a checkpoint's weights are stored in (bf16 for the hub's LLaMA weights, float32 here)."""
    cfg = read_json(Path(path) / "config.json")
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)


def seal_checkpoint(path: str | Path, window: int) -> dict:
    """Record, inside checkpoint ``path``, the sha256 of its weights and the logits it gives for the probe
    input (at ``window`` tokens, at most 1024): what ``load_verified`` checks before any evaluation. The probe
    runs as evaluations will load the model (``eval_placement``: bf16 on the job's GPUs on a GPU node; the rules
    that seal ask the GPUs of the size's evaluations when it has any), never in the weights' dtype on CPU, where
    fp16 runs at ~1 GFLOP/s and a 65B model in fp32 needs 260 GB."""
    path = Path(path)
    dtype, device_map = eval_placement()
    model = load_model(path, dtype=dtype, device_map=device_map)
    record_probe(model, path, window)
    record = {"sha256": sha256_weights(path), "rope_parameters": model.config.rope_parameters,
              "max_position_embeddings": model.config.max_position_embeddings,
              "probe": {"dtype": _dtype_name(dtype), "device": input_device(model).type}}
    write_json(path / RECORD_FILE, record)
    return record


def expected_sha256(path: str | Path) -> tuple[str, Path]:
    """The sha256 recorded for checkpoint ``path`` and the file that records it: ``../finetune.json`` for a
    fine-tuning export (step N > 0), the checkpoint's own record otherwise. Missing records are errors."""
    path = Path(path)
    step = path.name.removeprefix("step")
    if path.name.startswith("step") and step.isdigit() and int(step) > 0:
        manifest = path.parent / "finetune.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{path}: {manifest} is missing (the fine-tune did not finish)")
        entry = read_json(manifest).get("checkpoints", {}).get(path.name)
        if not entry:
            raise KeyError(f"{path}: {manifest} has no entry for {path.name}")
        return entry["sha256"], manifest
    record = path / RECORD_FILE
    if not record.is_file():
        raise FileNotFoundError(f"{path}: {RECORD_FILE} is missing (not written by the pipeline's base_model or "
                                "init_extension)")
    return read_json(record)["sha256"], record


def load_verified(path: str | Path, dtype=None, device_map=None):
    """Load a checkpoint for evaluation after checking it: the weights' sha256 against its record, then its
    logits against its probe. Returns (model, facts about the check); raises naming the checkpoint otherwise."""
    want, source = expected_sha256(path)
    got = sha256_weights(path)
    if got != want:
        raise RuntimeError(f"{path}: weights differ from those recorded in {source} (sha256 {got} != {want})")
    model = load_model(path, dtype=dtype or checkpoint_dtype(path), device_map=device_map)
    err = verify_probe(model, path)
    return model, {"sha256": got, "recorded_in": str(source), "probe_error": err}


def load_for_eval(path: str | Path):
    """An evaluation's checkpoint: checked by :func:`load_verified` (weights against their record, logits against
    the probe), in bf16 spread over the job's GPUs when there are any (33B/65B need several), fp32 on CPU.
    Returns (model, the fields a record keeps about which checkpoint it read)."""
    dtype, device_map = eval_placement()
    model, check = load_verified(path, dtype=dtype, device_map=device_map)
    facts = {"model": str(path), "model_sha256": check["sha256"], "model_record": check["recorded_in"],
             "rope_parameters": model.config.rope_parameters, "model_window": model.config.max_position_embeddings,
             "probe_error": check["probe_error"]}
    return model, facts


def load_tokenizer(path: str | Path):
    """The tokenizer a model folder carries (every checkpoint has its own copy); a clear error if it has none."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such model folder")
    if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise FileNotFoundError(f"{p}: no tokenizer (tokenizer.json / tokenizer_config.json); every checkpoint "
                                "carries its tokenizer: rebuild this one")
    return AutoTokenizer.from_pretrained(str(p))


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
        seal_checkpoint(tmp, cfg.max_position_embeddings)
    return cfg
