"""Memory before launch: each GPU job's peak memory per GPU, estimated from the config alone (rule ``plan`` shows
it; config validation refuses a job whose estimate exceeds its GPU's memory, ``cost.gpu_memory_gb``).

What is counted (b: bytes per value, 2 for bf16 on a GPU, 4 for fp32; N: tokens of one micro batch; d, f, V:
hidden, MLP and vocabulary widths; P: parameters, P_layer: those of one decoder layer):

- **Training** (finetune, summarize_finetune), per rank: weights, gradients and AdamW state; under DeepSpeed ZeRO
  (``train.deepspeed``, its ``zero_optimization.stage``) with bf16, fp32 master + m + v (12 B/param) and the bf16
  parameter and gradient (4 B/param), partitioned over the job's ranks (``sizing.train_ranks``: stage 3 all of
  it, stage 2 all but the parameters, stage 1 the optimizer state); without ZeRO, parameters, gradients, m and v
  in the weights' dtype (4 b/param; b more for DDP's gradient buckets on several ranks). ZeRO-3 adds the largest
  module gathered whole (its parameters and, in backward, its gradients: 2 x max(P_layer, V d) x b). Activations
  with gradient checkpointing: each layer's input (n_layers + 1 tensors of N x d x b), then the largest of three
  phases: one layer recomputed with everything its backward saves (``LAYER_SAVED``) plus its backward's
  gradients (``LAYER_BACKWARD``), the loss (``LOSS_BYTES`` per logit: the model's logits or the fp32 copy the
  loss takes, log-softmax and its gradients; 12 B x N x V), or the optimizer step's temporaries. Without
  checkpointing every layer's saved tensors. Gradients count whole throughout (gradient accumulation and
  ZeRO's partitioned buffers keep them between backward passes).
- **Evaluation** (perplexity, passkey, benchmark, summarize): the bf16 weights spread over ``eval_gpus`` by
  ``device_map="auto"``, the largest per-GPU share (whole layers, plus an embedding); one no-grad forward at the
  job's largest window (``perplexity.batch_size`` windows; ``passkey.batch_size`` prompts;
  ``benchmarks.batch_size`` at the benchmark window; ``summarization.generate.batch_size`` prompts): the
  residual stream plus one layer's working set (``LAYER_INFERENCE``); then the logits: perplexity scores in
  chunks of ``HEAD_CHUNK`` positions (perplexity.score_spans), generation (passkey, summarize) one position per
  sequence with a KV cache of the window (the per-GPU share of its layers), the harness (benchmark) all
  positions with their log-softmax. Summaries are left-padded: a boolean mask of B x T x T.
- **Attention**: the pipeline loads every model with SDPA (pi_repro.modeling), whose flash / memory-efficient
  kernels hold no T x T matrix; ``attention="eager"`` adds the scores and their fp32 softmax per head (B x h x T^2).
- A GPU job adds ``RUNTIME_GIB`` for the CUDA context and library workspaces. Not counted: the caching
  allocator's fragmentation, DeepSpeed's communication buckets, the export's probe forward (smaller than a step).

Measured on CPU (fp32, one process, tests/test_memory.py): against the peak RSS of real training steps and
perplexity forwards of the mini model and of SmolLM2-135M's shape the estimate is +0.7% to +14% off (always
over), within the test's bound of ``MEASURED_BOUND``. The GPU-specific terms (bf16, ZeRO-3, the runtime) are
counted, not measured here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import targets

GIB = 2 ** 30
GPU_MEMORY_GB = 80  # the paper's A100 80GB (cost.gpu_memory_gb; GiB)
RUNTIME_GIB = 1.0  # CUDA context, cuBLAS / NCCL workspaces of a GPU process
HEAD_CHUNK = 256  # perplexity.score_spans' head_chunk: scored positions through the output layer at once
LOSS_BYTES = 12  # per logit, at the loss's backward: fp32 logits or their log-softmax, its gradient, the next one
LAYER_SAVED = {"f": 4, "d": 10, "kv": 4}  # units of N x b a decoder layer saves for backward (gate, up, act, product;
# norms, q, attention output, o_proj, residuals; k, v and their rotations); bf16 norms also keep 2 fp32 copies of d
LAYER_BACKWARD = {"f": 3, "d": 2}  # gradients alive in a layer's backward (the MLP's three, two hidden states)
LAYER_INFERENCE = {"f": 3, "d": 3}  # a no-grad layer's live tensors (act(gate), up, their product; normed input)
MEASURED_BOUND = 0.25  # |estimate / measured - 1| allowed on CPU (tests/test_memory.py)


class Shape:
    """A size's architecture (pi_repro.cost.shape) with the counts the estimates need."""

    def __init__(self, sh):
        self.d, self.f, self.n = sh.hidden_size, sh.intermediate_size, sh.num_hidden_layers
        self.h, self.kv_heads, self.V = sh.num_attention_heads, sh.num_key_value_heads, sh.vocab_size
        self.hd = self.d // self.h
        self.kv = self.kv_heads * self.hd
        self.layer = 2 * self.d * self.d + 2 * self.d * self.kv + 3 * self.d * self.f + 2 * self.d
        self.params = self.n * self.layer + 2 * self.V * self.d + self.d  # untied embedding and output layer


def gpu_memory(cfg: dict) -> float:
    """Memory of one GPU in bytes (``cost.gpu_memory_gb``, GiB; default the paper's A100 80GB)."""
    return float(cfg.get("cost", {}).get("gpu_memory_gb", GPU_MEMORY_GB)) * GIB


def zero_stage(hp: dict) -> int:
    """The ZeRO stage of a training job: its DeepSpeed config's ``zero_optimization.stage`` (0 without one)."""
    ds = hp.get("deepspeed")
    if not ds:
        return 0
    path = Path(ds) if Path(ds).is_absolute() else targets.ROOT / ds
    return int(json.loads(path.read_text()).get("zero_optimization", {}).get("stage", 0))


def _out(parts: dict, phases: tuple[str, ...], assumed: str) -> dict:
    """Total: every part, but of the alternative ``phases`` only the largest (they are not alive together)."""
    fixed = sum(v for k, v in parts.items() if k not in phases)
    peak = max((parts[k] for k in phases if k in parts), default=0)
    return {"bytes": fixed + peak, "breakdown": parts, "phases": list(phases), "assumed": assumed}


def training_peak(sh: Shape, micro_batch: int, seq: int, *, dtype_bytes: int = 2, ranks: int = 1, zero: int = 0,
                  checkpointing: bool = True, window: int | None = None, padded: bool = False,
                  attention: str = "sdpa", gpu: bool = True) -> dict:
    """Peak bytes of one training rank: ``micro_batch`` sequences of ``seq`` tokens (CT: the same tokens split at
    ``window``), AdamW, ZeRO ``zero`` over ``ranks`` (see the module docstring)."""
    b, P, N = dtype_bytes, sh.params, micro_batch * seq
    window = window or seq
    parts = {}
    if zero:
        state = 12 if b == 2 else 8  # fp32 master (bf16 training) + m + v
        parts["weights"] = P * b / (ranks if zero >= 3 else 1)
        parts["gradients"] = P * b / (ranks if zero >= 2 else 1)
        parts["optimizer"] = P * state / ranks
        if zero >= 3:
            parts["gathered"] = 2 * max(sh.layer, sh.V * sh.d) * b
    else:
        parts["weights"], parts["gradients"], parts["optimizer"] = P * b, P * b, 2 * P * b
        if ranks > 1:
            parts["ddp_buckets"] = P * b
    saved = N * b * (LAYER_SAVED["f"] * sh.f + LAYER_SAVED["d"] * sh.d + LAYER_SAVED["kv"] * sh.kv)
    saved += N * 4 * 2 * sh.d if b == 2 else 0  # bf16: the norms compute in fp32
    if attention == "eager":
        saved += micro_batch * (seq // window) * sh.h * window ** 2 * (2 * b + 4)
    backward = N * b * (LAYER_BACKWARD["f"] * sh.f + LAYER_BACKWARD["d"] * sh.d)
    if checkpointing:
        parts["checkpoints"] = (sh.n + 1) * N * sh.d * b
        parts["layer"] = saved + backward
    else:
        parts["activations"] = sh.n * saved + N * sh.d * b
        parts["layer"] = backward
    parts["loss"] = N * sh.V * LOSS_BYTES
    # the optimizer step's temporaries: torch's multi-tensor AdamW on a GPU, one copy of what it updates (ZeRO: the
    # fp32 partition); on CPU it loops over the tensors, a copy or two of the largest (the embedding)
    parts["step"] = P * (4 / ranks if zero else b) if gpu else 2 * sh.V * sh.d * b
    if padded and micro_batch > 1:
        parts["mask"] = micro_batch * window ** 2
    if gpu:
        parts["runtime"] = RUNTIME_GIB * GIB
    what = (f"{'ZeRO-' + str(zero) if zero else 'no ZeRO'} over {ranks} rank(s), {'bf16' if b == 2 else 'fp32'}, "
            f"micro batch {micro_batch} x {seq} tokens, {'with' if checkpointing else 'without'} gradient "
            f"checkpointing, {attention} attention")
    return _out(parts, ("layer", "loss", "step"), what)


def forward_peak(sh: Shape, batch: int, window: int, *, dtype_bytes: int = 2, gpus: int = 1, scored: int | None = None,
                 kv_cache: int = 0, full_logits: bool = False, padded: bool = False, attention: str = "sdpa",
                 gpu: bool = True) -> dict:
    """Peak bytes on the fullest GPU of a no-grad forward of ``batch`` sequences of ``window`` tokens over ``gpus``
    (``device_map="auto"``): ``scored`` positions per sequence through the output layer at once (perplexity), or
    ``full_logits`` with their log-softmax (the harness); ``kv_cache`` positions cached (generation)."""
    b, N, g = dtype_bytes, batch * window, max(gpus, 1)
    layers = math.ceil(sh.n / g)
    parts = {"weights": (layers * sh.layer + sh.V * sh.d * (2 if g == 1 else 1) + sh.d) * b,
             "hidden": 2 * N * sh.d * b}  # the residual stream and the last hidden state
    layer = N * b * (LAYER_INFERENCE["f"] * sh.f + LAYER_INFERENCE["d"] * sh.d)
    layer += N * 4 * 2 * sh.d if b == 2 else 0  # bf16: the norms compute in fp32
    if attention == "eager":
        layer += batch * sh.h * window ** 2 * (b + 4)
    parts["layer"] = layer
    if full_logits:
        parts["logits"] = 2 * N * sh.V * b
    else:  # scored positions, logits cast to fp32 and their log-softmax; generation: the last position only
        parts["logits"] = batch * (scored or 1) * sh.V * (b + 8)
    if kv_cache:
        parts["kv_cache"] = 2 * batch * kv_cache * layers * sh.kv * b
    if padded and batch > 1:
        parts["mask"] = batch * window ** 2
    if gpu:
        parts["runtime"] = RUNTIME_GIB * GIB
    what = (f"{'bf16' if b == 2 else 'fp32'} weights over {g} GPU(s) ({layers} of {sh.n} layers on the fullest), "
            f"batch {batch} x {window} tokens, {attention} attention")
    return _out(parts, ("layer", "logits"), what)


# ------------------------------------------------------------------------------------------------ the config's jobs


def gb(n: float) -> float:
    return n / GIB


def describe(e: dict) -> str:
    """An estimate's breakdown, in GiB, the alternative phases marked."""
    items = ", ".join(f"{k} {gb(v):.1f}" + (" (phase)" if k in e["phases"] else "") for k, v in e["breakdown"].items())
    return f"{gb(e['bytes']):.1f} GB ({items}; of the phases only the largest counts; {e['assumed']})"


# ------------------------------------------------------------------------------------- measured (tests/test_memory)
def measure_train_step(model_dir: str | None, arch: dict | None, micro_batch: int, seq: int,
                       checkpointing: bool, steps: int = 2) -> float:
    """Peak RSS (bytes) above the process's RSS before the model loaded, of ``steps`` fp32 training steps on CPU
    (AdamW as the Trainer sets it up, gradient clipping, gradients set to None between steps: the second step's
    backward holds the optimizer state). Run it in a fresh process: peak RSS only grows."""
    import torch

    from .perf import rss_now_and_peak

    torch.manual_seed(0)
    vocab = arch["vocab_size"] if arch else json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    ids = torch.randint(vocab, (micro_batch, seq))
    make = _model_maker(model_dir, arch)  # the libraries imported before the baseline
    base, _ = rss_now_and_peak()
    model = make()
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (rss_now_and_peak()[1] - base) * 2 ** 20


def measure_perplexity(model_dir: str | None, arch: dict | None, batch: int, window: int) -> float:
    """Peak RSS (bytes) above the RSS before the model loaded, of scoring ``batch`` first windows of ``window``
    tokens (every position but the first) with perplexity.score_spans on CPU, fp32."""
    import torch

    from .perf import rss_now_and_peak
    from .perplexity import score_spans, window_spans

    torch.manual_seed(0)
    vocab = arch["vocab_size"] if arch else json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    docs = [torch.randint(vocab, (window,)) for _ in range(batch)]
    spans = [s for i, d in enumerate(docs) for s in window_spans(len(d), window, window // 2, doc=i)[:1]]
    make = _model_maker(model_dir, arch)
    base, _ = rss_now_and_peak()
    model = make().eval()
    score_spans(model, docs, spans, batch_size=batch)
    return (rss_now_and_peak()[1] - base) * 2 ** 20


def _model_maker(model_dir: str | None, arch: dict | None):
    """A function that loads the shipped model at ``model_dir`` or builds a random one of ``arch`` (fp32)."""
    import torch
    from transformers import LlamaForCausalLM

    from .modeling import base_config, load_model

    if model_dir:
        return lambda: load_model(model_dir, dtype=torch.float32)
    return lambda: LlamaForCausalLM(base_config(arch, arch["vocab_size"], 1 << 15))
