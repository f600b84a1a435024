"""Performance accounting: model FLOPs per token, this machine's matmul peak, a fine-tune's achieved FLOP/s, and
the naive sliding-window perplexity reference that `benchmarks/run.py` measures the pipeline's evaluation against.

FLOPs per token follow the usual accounting (PaLM, appendix B): a forward pass costs 2 N + 4 n_layers T d (the
matmuls with the N weights, and attention's QK^T and AV over T positions of width d, causal masking not
discounted); training is three times the forward: 6 N + 12 n_layers T d. N counts the weights that take part in
matmuls (every parameter but the input embedding, which is a lookup).
"""
from __future__ import annotations

import math
import time

import numpy as np


def matmul_params(config) -> int:
    """Weights that take part in matmuls: all but the input embedding (LLaMA: untied output layer)."""
    d, f, v, layers = config.hidden_size, config.intermediate_size, config.vocab_size, config.num_hidden_layers
    heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attn = d * heads * head_dim + 2 * d * kv * head_dim + heads * head_dim * d
    mlp = 3 * d * f
    return layers * (attn + mlp) + d * v


def flops_per_token(config, seq_len: int, training: bool = True) -> float:
    """Model FLOPs per token at sequence length ``seq_len``: 6 N + 12 n_layers T d (training), a third of it for a
    forward pass."""
    fwd = 2 * matmul_params(config) + 4 * config.num_hidden_layers * seq_len * config.hidden_size
    return 3 * fwd if training else fwd


def eval_flops(config, n_windows: int, window: int) -> float:
    """Model FLOPs of a sliding-window evaluation that runs ``n_windows`` forward passes of ``window`` tokens:
    the forward FLOPs per token at that length times the tokens computed. Model FLOPs, as for MFU: the output
    layer counted at every position and causal attention in full, although ``pi_repro.perplexity`` computes
    logits at the scored positions only (and SDPA kernels may skip masked blocks)."""
    return n_windows * window * flops_per_token(config, window, training=False)


def matmul_peak(n: int = 1024, dtype=None, seconds: float = 2.0, device: str = "cpu") -> float:
    """This machine's sustained FLOP/s for a square matmul of size ``n`` (best of repeated timings), with the
    threads torch uses (or on ``device``): what a fine-tune's MFU is measured against."""
    import torch

    dtype = dtype or torch.float32
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def training_throughput(config, seq_len: int, tokens: int, seconds: float) -> dict:
    """What a fine-tune achieved: tokens per second, model FLOPs per token and FLOP/s (recorded in finetune.json)."""
    fpt = flops_per_token(config, seq_len)
    tps = tokens / seconds if seconds > 0 else float("nan")
    return {"tokens_per_second": tps, "flops_per_token": fpt, "achieved_flops_per_second": tps * fpt,
            "train_seconds": seconds, "tokens_trained": tokens}


def naive_perplexity(model, docs, window: int, stride: int) -> float:
    """The reference peers' scripts use (the transformers documentation's recipe): one window per forward pass,
    the model's own loss over full logits at every position (context positions labelled -100), the KV cache on
    (the default). Same windows and scored tokens as ``pi_repro.perplexity``; slower, and its memory grows with
    window x vocabulary."""
    import torch

    nll, count = 0.0, 0
    with torch.no_grad():
        for doc in docs:
            n, prev_end = len(doc), 1
            end = min(window, n)
            while prev_end < n:
                begin = max(0, end - window)
                ids = doc[begin:end].unsqueeze(0)
                labels = ids.clone()
                labels[:, :-(end - prev_end)] = -100
                out = model(input_ids=ids, labels=labels)
                scored = end - prev_end
                nll += float(out.loss) * scored
                count += scored
                prev_end, end = end, min(end + stride, n)
    return math.exp(nll / count)


def rss_now_and_peak() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux /proc)."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got["VmRSS"], got["VmHWM"]


def random_docs(vocab: int, n_docs: int, length: int, seed: int = 0):
    import torch

    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(2, vocab, size=length)) for _ in range(n_docs)]
