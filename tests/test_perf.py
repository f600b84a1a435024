"""Performance accounting (pi_repro.perf) and the benchmark command (benchmarks/run.py): the FLOP count against
the real model's weights, the naive perplexity reference against the pipeline's, and the command's table."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from pi_repro import perf, perplexity  # noqa: E402


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_matmul_params_are_the_models_weights_but_the_input_embedding(kv_heads):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=kv_heads)
    model = LlamaForCausalLM(cfg)
    weights = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "norm" not in n)
    assert perf.matmul_params(cfg) == weights


def test_flops_per_token_is_palms_accounting():
    from transformers import LlamaConfig

    llama7b = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32)
    n = perf.matmul_params(llama7b)
    assert 6.60e9 < n < 6.62e9  # 6.74B parameters less the 131M input embedding
    assert perf.flops_per_token(llama7b, 2048) == 6 * n + 12 * 32 * 2048 * 4096
    assert perf.flops_per_token(llama7b, 2048, training=False) * 3 == perf.flops_per_token(llama7b, 2048)
    t = perf.training_throughput(llama7b, 2048, tokens=4096, seconds=2.0)
    assert t["tokens_per_second"] == 2048 and t["achieved_flops_per_second"] == 2048 * t["flops_per_token"]


def test_eval_flops_is_the_forward_of_every_window_computed():
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=2)
    # by hand: matmul weights 2 layers x (4 x 16 x 16 attention + 3 x 16 x 40 MLP) + 16 x 100 output = 7488;
    # per token at 32 positions 2 x 7488 + 4 x 2 layers x 32 x 16 = 19072; 3 windows of 32 tokens
    assert perf.eval_flops(cfg, 3, 32) == 3 * 32 * 19072 == 1830912
    assert perf.eval_flops(cfg, 1, 32) * 3 == perf.flops_per_token(cfg, 32) * 32  # a third of training's


def test_naive_reference_gives_the_pipelines_perplexity(tiny_llama):
    docs = perf.random_docs(tiny_llama.config.vocab_size, 2, 150, seed=1)
    for window, stride in ((64, 16), (32, 31)):
        nll, count = perplexity.sliding_window_nll(tiny_llama, docs, window, stride, batch_size=4)
        ours = perplexity.perplexity(nll, count)
        assert perf.naive_perplexity(tiny_llama, docs, window, stride) == pytest.approx(ours, rel=1e-6)


def test_matmul_peak_is_a_plausible_rate():
    peak = perf.matmul_peak(256, seconds=0.2)
    assert 1e8 < peak < 1e15


@pytest.mark.slow
def test_benchmark_command_prints_every_figure_with_its_target(tmp_path):
    out = tmp_path / "results.md"
    p = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    text = out.read_text()
    for name in ("perplexity: same value as the naive reference", "perplexity: throughput vs naive",
                 "perplexity: peak memory vs naive", "fine-tune: model FLOP/s / matmul peak (MFU)",
                 "perplexity: evaluation MFU, LLaMA-like shape", "perplexity: throughput vs naive, LLaMA-like shape",
                 "DAG: snakemake -n all, paper configuration", "DAG: heavy modules imported while it is built"):
        assert name in text
    assert re.search(r"\| perplexity: same value as the naive reference +\| ", text) and "pass" in text
    assert re.search(r"heavy modules imported while it is built +\| none ", text)  # nothing heavy while building
    assert ("no GPU on this machine" in text) == (not torch.cuda.is_available())
    assert "CPUs, torch" in text  # the machine it ran on
