#!/usr/bin/env python3
"""The project's performance benchmarks, each against its target, in one run on this machine (ratios: absolute
times drift here). Prints a table and writes it, with the machine it ran on, to benchmarks/results.md.

    python benchmarks/run.py              # CPU benchmarks (about 3 min on 2 cores); the GPU section if a GPU is present
    python benchmarks/run.py --e2e        # also the smoke configuration end to end (about 2.5 min more)
    python benchmarks/run.py --quick      # smaller sizes, for a check that everything runs (tests use it)

Each measurement runs in its own process (peak memory is per process). What is measured and why:
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

# (vocab, hidden, layers, heads, window, stride, docs, doc length) of the perplexity benchmark
PPL = {"full": (32000, 128, 2, 2, 2048, 256, 2, 8192), "quick": (32000, 64, 1, 1, 512, 128, 1, 1536)}
HEAVY = ("torch", "transformers", "lm_eval", "deepspeed", "datasets")
# (vocab, hidden, intermediate, layers, heads, window, stride, docs, doc length) of the evaluation benchmark at a
# LLaMA-like shape: the trunk dominates, as in LLaMA; the output layer's and attention's shares of the forward
# FLOPs are LLaMA-7B's at a window of 16384 (flop_shares: 1.2% and 39%, printed with the result)
LLAMA_LIKE = {"full": (1024, 512, 1376, 8, 8, 2048, 256, 1, 2048 + 3 * 256),
              "quick": (512, 128, 344, 4, 2, 512, 128, 1, 512 + 2 * 128)}


# ------------------------------------------------------------------------------------------- child processes
def child_ppl(variant: str, size: str) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pi_repro import perf, perplexity

    vocab, d, layers, heads, window, stride, n_docs, length = PPL[size]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=4 * d, num_hidden_layers=layers,
                      num_attention_heads=heads, max_position_embeddings=window)
    model = LlamaForCausalLM(cfg).eval()
    docs = perf.random_docs(vocab, n_docs, length)
    before, _ = perf.rss_now_and_peak()
    t = time.perf_counter()
    if variant == "ours":
        nll, count = perplexity.sliding_window_nll(model, docs, window, stride, batch_size=1)
        ppl, scored = perplexity.perplexity(nll, count), int(count.sum())
    else:
        ppl, scored = perf.naive_perplexity(model, docs, window, stride), n_docs * (length - 1)
    secs = time.perf_counter() - t
    _, peak = perf.rss_now_and_peak()
    return {"perplexity": ppl, "seconds": secs, "tokens_per_second": scored / secs, "peak_mb": peak - before,
            "window": window, "vocab": vocab}


def llama_like_config(size: str):
    from transformers import LlamaConfig

    vocab, d, f, layers, heads, window, *_ = LLAMA_LIKE[size]
    return LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=f, num_hidden_layers=layers,
                       num_attention_heads=heads, max_position_embeddings=window)


def flop_shares(config, window: int) -> tuple[float, float]:
    """(output layer, attention) shares of the forward FLOPs per token at ``window`` (pi_repro.perf's count)."""
    from pi_repro import perf

    total = perf.flops_per_token(config, window, training=False)
    d = config.hidden_size
    return 2 * d * config.vocab_size / total, 4 * config.num_hidden_layers * window * d / total


def child_ppl_llama(size: str, repeats: int = 2) -> dict:
    """The pipeline's sliding-window evaluation and the naive reference of a random model of LLAMA_LIKE's shape,
    alternated in one process (the best of ``repeats`` runs each: this machine's cores are shared): their times,
    the forward model FLOPs of the windows computed (``perf.eval_flops``) and this machine's fp32 matmul peak."""
    import torch
    from transformers import LlamaForCausalLM

    from pi_repro import perf, perplexity

    vocab, *_, window, stride, n_docs, length = LLAMA_LIKE[size]
    torch.manual_seed(0)
    cfg = llama_like_config(size)
    model = LlamaForCausalLM(cfg).eval()
    docs = perf.random_docs(vocab, n_docs, length)
    windows = sum(len(perplexity.window_spans(len(d), window, stride)) for d in docs)  # all full length
    runs = {"ours": lambda: perplexity.sliding_window_nll(model, docs, window, stride, batch_size=1),
            "naive": lambda: perf.naive_perplexity(model, docs, window, stride)}
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            t = time.perf_counter()
            run()
            best[k] = min(best[k], time.perf_counter() - t)
    return {"seconds": best["ours"], "naive_seconds": best["naive"], "windows": windows, "window": window,
            "stride": stride, "flops": perf.eval_flops(cfg, windows, window), "matmul_peak": perf.matmul_peak(),
            "threads": torch.get_num_threads()}


def child_finetune(steps: int) -> dict:
    """The default configuration's fine-tune (the shipped model, PI at 256, 8 sequences per step, its optimizer)
    through the pipeline's Trainer, on random tokens; its model FLOP/s against this machine's matmul peak."""
    import tempfile

    import numpy as np
    import torch
    import yaml

    from pi_repro import modeling, perf, train

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "step0"
        modeling.init_extension(ROOT / "resources/models/mini", "PI", 256, cfg["base_window"], init)
        model = modeling.load_model(init)
        hp = dict(cfg["train"], lr=cfg["sizes"]["mini"]["lr"], steps=steps, seed=0, resume_every=10 ** 6)
        tokens = np.random.default_rng(0).integers(2, model.config.vocab_size, size=steps * 8 * 256 + 1)
        trainer = train.build_trainer(model, train.Chunks(tokens, 256), hp, Path(tmp) / "work", None, [], None)
        metrics = trainer.train().metrics
        got = perf.training_throughput(model.config, 256, steps * hp["global_batch"] * 256, metrics["train_runtime"])
    peak = perf.matmul_peak()
    return dict(got, matmul_peak=peak, mfu=got["achieved_flops_per_second"] / peak, threads=torch.get_num_threads())


def child_dag() -> dict:
    """`snakemake -n all` on the paper configuration: its time, and which heavy modules the DAG's construction
    imported (none should be)."""
    import atexit

    out = os.environ["PI_BENCH_OUT"]
    start = time.perf_counter()

    def report():
        Path(out).write_text(json.dumps({"seconds": time.perf_counter() - start, "import_seconds": imported - start,
                                         "heavy_imports": [m for m in HEAVY if m in sys.modules]}))

    atexit.register(report)
    from snakemake.cli import main

    imported = time.perf_counter()  # Snakemake and its plugins (the SLURM plugin asks scontrol at import)

    os.chdir(ROOT)
    main(["all", "-n", "--quiet", "--configfile", "config/paper.yaml"])


def run_child(*args, env=None) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        raise RuntimeError(f"benchmark {args} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- the table
def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}; "
            f"Python {platform.python_version()}")


def row(name, measured, target, ok, detail=""):
    return {"benchmark": name, "measured": measured, "target": target,
            "result": "n/a" if ok is None else ("pass" if ok else "FAIL"), "detail": detail}


def cpu_rows(size: str, ft_steps: int) -> list[dict]:
    ours, naive = run_child("ppl", "ours", size), run_child("ppl", "naive", size)
    rel = abs(ours["perplexity"] / naive["perplexity"] - 1)
    speed = ours["tokens_per_second"] / naive["tokens_per_second"]
    mem = ours["peak_mb"] / max(naive["peak_mb"], 1e-9)
    where = f"window {ours['window']}, vocab {ours['vocab']}"
    rows = [row("perplexity: same value as the naive reference", f"{rel:.1e} relative", "<= 1e-5", rel <= 1e-5,
                f"{ours['perplexity']:.4f} vs {naive['perplexity']:.4f}"),
            row("perplexity: throughput vs naive", f"{speed:.1f}x", ">= 3x", speed >= 3,
                f"{ours['tokens_per_second']:.0f} vs {naive['tokens_per_second']:.0f} tokens/s ({where})"),
            row("perplexity: peak memory vs naive", f"{mem:.2f}x", "<= 0.25x", mem <= 0.25,
                f"{ours['peak_mb']:.0f} vs {naive['peak_mb']:.0f} MB above the loaded model ({where})")]
    ft = run_child("finetune", str(ft_steps))
    rows.append(row("fine-tune: model FLOP/s / matmul peak (MFU)", f"{100 * ft['mfu']:.0f}%", ">= 50%",
                    ft["mfu"] >= 0.5, f"{ft['tokens_per_second']:.0f} tokens/s x {ft['flops_per_token'] / 1e6:.1f} "
                    f"MFLOP/token = {ft['achieved_flops_per_second'] / 1e9:.1f} GFLOP/s; peak "
                    f"{ft['matmul_peak'] / 1e9:.1f} GFLOP/s fp32 ({ft['threads']} threads); default PI-256 fine-tune"))
    tmp = ROOT / "results" / ".bench-dag.json"
    tmp.parent.mkdir(exist_ok=True)
    p = subprocess.run([sys.executable, __file__, "--child", "dag"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PI_BENCH_OUT=str(tmp)))
    if not tmp.is_file():
        raise RuntimeError(f"the DAG benchmark failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    dag = json.loads(tmp.read_text())
    tmp.unlink()
    rows += [row("DAG: snakemake -n all, paper configuration", f"{dag['seconds']:.1f} s", "< 5 s", dag["seconds"] < 5,
                 f"of which importing Snakemake and its plugins {dag['import_seconds']:.1f} s (the SLURM plugin "
                 "queries scontrol at import: about 10 s more where SLURM is installed but its controller is down)"),
             row("DAG: heavy modules imported while it is built", ", ".join(dag["heavy_imports"]) or "none", "none",
                 not dag["heavy_imports"], " ".join(HEAVY))]
    return rows


def llama_like_rows(size: str) -> list[dict]:
    """Evaluation MFU of the pipeline's perplexity at a LLaMA-like shape, and the naive reference's speed there."""
    from transformers import LlamaConfig

    ours = run_child("ppl-llama", size)
    mfu = ours["flops"] / ours["seconds"] / ours["matmul_peak"]
    vocab, d, f, layers, heads, *_ = LLAMA_LIKE[size]
    head, attn = flop_shares(llama_like_config(size), ours["window"])
    head7, attn7 = flop_shares(LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                           num_hidden_layers=32, num_attention_heads=32), 16384)
    shape = (f"d {d}, {layers} layers, MLP {f}, {heads} heads, vocab {vocab}, window {ours['window']}, stride "
             f"{ours['stride']}: output layer {100 * head:.1f}% and attention {100 * attn:.0f}% of the forward FLOPs "
             f"(LLaMA-7B at 16384: {100 * head7:.1f}%, {100 * attn7:.0f}%)")
    return [row("perplexity: evaluation MFU, LLaMA-like shape", f"{100 * mfu:.0f}%", "reported", None,
                f"{ours['windows']} windows x {ours['flops'] / ours['windows'] / 1e9:.1f} GFLOP (forward model FLOPs,"
                f" perf.eval_flops) in {ours['seconds']:.1f} s = {ours['flops'] / ours['seconds'] / 1e9:.1f} GFLOP/s; "
                f"peak {ours['matmul_peak'] / 1e9:.1f} GFLOP/s fp32 ({ours['threads']} threads); {shape}"),
            row("perplexity: throughput vs naive, LLaMA-like shape", f"{ours['naive_seconds'] / ours['seconds']:.2f}x",
                "reported", None, f"{ours['seconds']:.1f} s vs {ours['naive_seconds']:.1f} s for the same windows "
                "(best of 2 each, alternated in one process): the output layer, which the pipeline computes at "
                "scored positions only, is little of the work at this shape")]


def e2e_rows() -> list[dict]:
    run = "bench-smoke"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "--config", f"run={run}",
                    "--cores", "2", "--forceall", "--quiet"], cwd=ROOT, check=True, capture_output=True)
    secs = time.perf_counter() - t
    return [row("end to end: smoke configuration (every rule)", f"{secs / 60:.1f} min", "<= 2 min", secs <= 120,
                f"results/{run}; where the time goes: workflow/scripts/summarize_benchmarks.py results/{run}")]


def gpu_rows() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [row("GPU section", "skipped", "-", None, "no GPU on this machine")]
    from transformers import LlamaConfig, LlamaForCausalLM

    from pi_repro import perf, perplexity

    cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=22,
                      num_attention_heads=16, max_position_embeddings=8192,
                      rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.0)
    ids = torch.randint(2, 32000, (1, 8192), device="cuda")
    model.gradient_checkpointing_enable()
    for i in range(6):  # 2 warm-up steps, 4 timed
        if i == 2:
            torch.cuda.synchronize()
            t = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    torch.cuda.synchronize()
    secs = time.perf_counter() - t
    got = perf.training_throughput(cfg, 8192, 4 * 8192, secs)
    peak = perf.matmul_peak(8192, torch.bfloat16, device="cuda")
    model.eval()
    cfg32 = LlamaConfig(**{**cfg.to_dict(), "max_position_embeddings": 32768,
                          "rope_parameters": {"rope_type": "linear", "factor": 16.0, "rope_theta": 10000.0}})
    model32 = LlamaForCausalLM(cfg32).to("cuda", torch.bfloat16).eval()
    docs = [torch.randint(2, 32000, (40000,), device="cuda")]
    t = time.perf_counter()
    nll, count = perplexity.sliding_window_nll(model32, docs, 32768, 256, batch_size=1)
    torch.cuda.synchronize()
    ppl_tps = count.sum() / (time.perf_counter() - t)
    return [row("GPU: PI fine-tune step at 8192, ~1B LLaMA, bf16", f"{got['tokens_per_second']:.0f} tokens/s", "-",
                None, f"MFU {100 * got['achieved_flops_per_second'] / peak:.0f}% of {peak / 1e12:.0f} TFLOP/s "
                "measured bf16 matmul; gradient checkpointing on"),
            row("GPU: perplexity at 32768, stride 256, ~1B LLaMA", f"{ppl_tps:.0f} tokens/s", "-", None)]


def render(rows: list[dict], mode: str) -> str:
    import pandas as pd

    head = (f"# Benchmarks\n\n`python benchmarks/run.py{'' if mode == 'full' else ' --' + mode}` on {machine()}, "
            f"{time.strftime('%Y-%m-%d')}.\n\n")
    return head + pd.DataFrame(rows).to_markdown(index=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that every benchmark runs")
    ap.add_argument("--e2e", action="store_true", help="also time the smoke configuration end to end")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results.md"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "ppl":
            print(json.dumps(child_ppl(*rest)))
        elif kind == "ppl-llama":
            print(json.dumps(child_ppl_llama(rest[0])))
        elif kind == "finetune":
            print(json.dumps(child_finetune(int(rest[0]))))
        elif kind == "dag":
            child_dag()
        return
    mode = "quick" if a.quick else "full"
    rows = (cpu_rows(mode, 4 if a.quick else 30) + llama_like_rows(mode) + (e2e_rows() if a.e2e else [])
            + gpu_rows())
    text = render(rows, mode)
    Path(a.out).write_text(text)
    print(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
