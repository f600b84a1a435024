"""benchmarks/gpu_check.py, the one-GPU check: its code runs end to end on CPU at tiny sizes (--reduced, the shipped
mini model), every section reports real numbers, and the run loads none of snakemake, deepspeed, datasets, lm_eval
and gguf (a GPU machine needs only torch, transformers, safetensors, tokenizers and this repository)."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("1 seal", "2 ppl", "3 train", "4 passkey", "5 eval")


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_reduced_gpu_check_reports_every_section_and_loads_no_heavy_package(tmp_path):
    out = tmp_path / "check.json"
    p = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--reduced", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rec = json.loads(out.read_text())
    s = rec["sections"]
    assert list(s) == list(SECTIONS) and not [n for n in SECTIONS if "error" in s[n]]

    assert s["1 seal"]["probe_error"] <= 1e-3 and len(s["1 seal"]["sha256"]) == 64  # fp32 on CPU: read as sealed
    ppl = s["2 ppl"]
    assert ppl["reference_same_docs"] and ppl["reference_same_weights"]
    assert list(ppl["windows"]) == ["128", "256"]  # L and 2L of the mini model (L = 128)
    for row in ppl["windows"].values():
        assert _number(row["reference_fp32_cpu"]) and row["reference_fp32_cpu"] > 1
        assert row["float32_cpu_rel_diff"] < 1e-6  # the reference's own computation
        assert 0 < row["bfloat16_cpu_rel_diff"] < 2e-2
    tr = s["3 train"]
    assert tr["seq_len"] == 256 and tr["timed_steps"] >= 1 and tr["attn_implementation"] == "sdpa"
    assert tr["sdpa_kernels"] and "none seen" not in tr["sdpa_kernels"][0]
    for k in ("tokens_per_second", "flops_per_token", "matmul_peak", "mfu", "final_train_loss"):
        assert _number(tr[k]) and tr[k] > 0, k
    pk = s["4 passkey"]
    assert pk["export_probe_error"] <= 1e-3 and pk["window"] == 256 and pk["trials"] == 4
    assert isinstance(pk["k_max"], int) and 0 <= pk["accuracy"] <= 1
    ev = s["5 eval"]
    assert ev["window"] == 512 and ev["windows_computed"] == 4 and ev["full_windows"]
    for k in ("perplexity", "model_flops", "matmul_peak", "mfu", "scored_tokens_per_second", "process_peak_rss_gb"):
        assert _number(ev[k]) and ev[k] > 0, k

    printed = p.stdout
    for name in SECTIONS:
        assert f"| {name} |" in printed
    assert "loaded at the end | none |" in printed and "heavy modules loaded: none" in printed
    assert rec["heavy_modules_loaded"] == [] and sorted(rec["blocked"]) == sorted(_gpu_check().HEAVY)
    assert out.with_suffix(".md").read_text().count("\n|") >= 15


def test_the_sdpa_backend_is_read_off_the_profiled_op_names():
    kernels = _gpu_check().sdpa_kernels
    assert kernels({"aten::scaled_dot_product_attention": 4, "aten::_scaled_dot_product_flash_attention": 4,
                    "aten::_scaled_dot_product_flash_attention_backward": 4}) == ["flash"]
    assert kernels({"aten::_scaled_dot_product_flash_attention_for_cpu": 2}) == ["flash (CPU)"]
    assert kernels({"aten::_scaled_dot_product_efficient_attention": 1}) == ["memory-efficient"]
    assert kernels({"aten::_scaled_dot_product_cudnn_attention": 1}) == ["cuDNN"]
    assert kernels({"aten::bmm": 3}) == ["none seen (eager attention?)"]
