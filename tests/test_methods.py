"""The method registry (pi_repro.methods) against the formulas of the papers, written here independently: each
method's inverse frequencies and attention scaling, computed from its paper, equal what a model built from the
extended config actually uses (transformers' rotary embedding of the loaded model), for the shipped mini model,
SmolLM2-135M's shape and a LLaMA-7B shape; a perturbed parameter makes them differ; the checkpoint gate refuses a
checkpoint whose config lost its method's parameters.

Formulas (s = L'/L, d = head dimension, θ = RoPE base, θ_i = θ^(-2i/d), i = 0 .. d/2 - 1):
- PI (Chen et al. 2023, eq. 2): f'(x, m) = f(x, m/s), so each frequency is θ_i / s.
- NTK-aware (bloc97): base θ s^(d/(d-2)); the lowest frequency is then exactly θ_(d/2-1) / s, the highest θ_0.
- Dynamic NTK (emozilla; the YaRN paper's definition, s = ℓ/L): at a sequence of ℓ > L tokens the base is
  θ (ℓ/L)^(d/(d-2)); up to L, θ. It does not depend on L'.
- YaRN (Peng et al. 2023, section 3.2-3.4): wavelength λ_i = 2π/θ_i, r(i) = L/λ_i; dimensions with r < α = 1 are
  interpolated (θ_i/s), those with r > β = 32 kept (θ_i), between them a linear ramp. The paper writes the ramp as
  γ(r) = (r - α)/(β - α); its released code (and transformers) ramp linearly in the dimension index i between the
  dimensions where r = β and r = α, i(r) = d ln(L/(2π r)) / (2 ln θ), rounded outward (floor, ceil): both are
  checked, the first as bounds, the second exactly. Attention: logits / t with √(1/t) = 0.1 ln s + 1, which
  transformers applies by scaling cos and sin by √(1/t).
- Llama 3.1 (Meta's llama-models, ``apply_scaling``): with λ_i = 2π/θ_i, λ_i < L/4 kept, λ_i > L/1 divided by s,
  between them (1 - γ) θ_i/s + γ θ_i with γ = (L/λ_i - 1)/(4 - 1); no attention scaling.
"""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from pi_repro import methods, modeling  # noqa: E402
from pi_repro.methods import METHODS  # noqa: E402
from transformers import LlamaConfig  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

MINI = json.loads((ROOT / "resources/models/mini/config.json").read_text())
SHAPES = {  # (head dim, θ, L): the shipped mini model, SmolLM2-135M, LLaMA-7B
    "mini": (64, 10000.0, 128), "smollm2": (64, 100000.0, 2048), "llama7b": (128, 10000.0, 2048)}


def base_config(d: int, theta: float, L: int) -> LlamaConfig:
    return LlamaConfig(hidden_size=4 * d, intermediate_size=8 * d, num_hidden_layers=1, num_attention_heads=4,
                       head_dim=d, max_position_embeddings=L, vocab_size=32,
                       rope_parameters={"rope_type": "default", "rope_theta": theta})


def used(config: LlamaConfig, seq: int | None = None) -> tuple[torch.Tensor, float]:
    """(inverse frequencies, attention scaling) the model's rotary embedding uses, after a forward pass over
    ``seq`` positions (dynamic methods recompute there)."""
    rope = LlamaRotaryEmbedding(config)
    if seq is not None:
        x = torch.zeros(1, seq, 8)
        rope(x, torch.arange(seq)[None])
    return rope.inv_freq.double(), float(rope.attention_scaling)


def theta_i(theta: float, d: int) -> torch.Tensor:
    return theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


def yarn_expected(theta: float, d: int, L: int, s: float, alpha: float = 1, beta: float = 32):
    """YaRN's frequencies from the paper's definitions, with the released code's ramp in the dimension index."""
    base = theta_i(theta, d)

    def dim_of(r):  # the (fractional) dimension index whose wavelength fits r times into L
        return d * math.log(L / (2 * math.pi * r)) / (2 * math.log(theta))

    lo, hi = max(math.floor(dim_of(beta)), 0), min(math.ceil(dim_of(alpha)), d - 1)
    hi = hi + 0.001 if lo == hi else hi
    keep = 1 - torch.clamp((torch.arange(d // 2, dtype=torch.float64) - lo) / (hi - lo), 0, 1)  # 1: θ_i kept
    return base / s * (1 - keep) + base * keep, 0.1 * math.log(s) + 1


def expected(method: str, d: int, theta: float, L: int, s: float, seq: int | None = None):
    base = theta_i(theta, d)
    if method in ("FT", "CT"):
        return base, 1.0
    if method == "PI":
        return base / s, 1.0
    if method == "NTK":
        return theta_i(theta * s ** (d / (d - 2)), d), 1.0
    if method == "DynNTK":
        ell = max(seq or L, L)
        return theta_i(theta * (ell / L) ** (d / (d - 2)), d), 1.0
    if method == "YaRN":
        return yarn_expected(theta, d, L, s)
    if method == "Llama3":
        lam = 2 * math.pi / base
        gamma = torch.clamp((L / lam - 1) / (4 - 1), 0, 1)  # 0 where λ > L, 1 where λ < L/4
        return (1 - gamma) * base / s + gamma * base, 1.0
    raise AssertionError(f"no formula written for method {method}: add it here")


def test_every_registered_method_has_its_formula_here():
    for m in METHODS:
        expected(m, 64, 10000.0, 128, 2.0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("s", [2, 16])
def test_each_method_uses_its_papers_frequencies_and_attention_scaling(method, shape, s):
    d, theta, L = SHAPES[shape]
    ext = modeling.extended_config(base_config(d, theta, L), method, s * L, L)
    seq = 3 * L if method == "DynNTK" else None  # past L, where dynamic NTK rescales
    got_inv, got_att = used(ext, seq)
    want_inv, want_att = expected(method, d, theta, L, s, seq)
    assert torch.allclose(got_inv, want_inv, rtol=1e-5, atol=0), (method, shape, (got_inv / want_inv).tolist())
    assert got_att == pytest.approx(want_att, rel=1e-6)
    if method == "DynNTK":  # inside L it is the base model, and the config keeps L where transformers reads it
        assert ext.max_position_embeddings == L
        assert torch.allclose(used(ext, L)[0], theta_i(theta, d), rtol=1e-6)


@pytest.mark.parametrize("s", [2, 16])
def test_yarn_keeps_short_wavelengths_interpolates_long_ones_and_ramps_between(s):
    """The paper's own statement of the ramp, as bounds: r > β kept, r < α divided by s, between them in between
    and monotone; and the temperature: √(1/t) = 0.1 ln s + 1 (s = 16: 1.277)."""
    d, theta, L = SHAPES["llama7b"]
    inv, att = used(modeling.extended_config(base_config(d, theta, L), "YaRN", s * L, L))
    base = theta_i(theta, d)
    r = L * base / (2 * math.pi)
    ratio = inv / base  # 1 where kept, 1/s where interpolated
    assert torch.allclose(ratio[r > 32], torch.ones(1, dtype=torch.float64), rtol=1e-6)
    assert torch.allclose(ratio[r < 1], torch.full((1,), 1 / s, dtype=torch.float64), rtol=1e-6)
    assert ((ratio <= 1 + 1e-6) & (ratio >= 1 / s - 1e-6)).all() and (ratio[1:] <= ratio[:-1] + 1e-6).all()
    assert (r > 32).sum() > 0 and (r < 1).sum() > 0
    assert att == pytest.approx(0.1 * math.log(s) + 1)


@pytest.mark.parametrize("change", ["factor", "theta", "beta_fast", "original", "attention"])
def test_a_perturbed_parameter_is_seen(change):
    """Each parameter matters: perturbed in the config, the frequencies or the scaling differ from the paper's."""
    d, theta, L = SHAPES["llama7b"]
    s = 16
    ext = modeling.extended_config(base_config(d, theta, L), "YaRN", s * L, L)
    p = dict(ext.rope_parameters)
    p.update({"factor": {"factor": s * 1.01}, "theta": {"rope_theta": theta * 1.01}, "beta_fast": {"beta_fast": 24},
              "original": {"original_max_position_embeddings": s * L}, "attention": {"attention_factor": 1.2}}[change])
    ext.rope_parameters = p
    inv, att = used(ext)
    want_inv, want_att = expected("YaRN", d, theta, L, s)
    assert not (torch.allclose(inv, want_inv, rtol=1e-5) and att == pytest.approx(want_att, rel=1e-6)), change


@pytest.mark.parametrize("change", ["factor", "low_freq_factor", "high_freq_factor", "original"])
def test_a_perturbed_llama3_parameter_is_seen(change):
    d, theta, L = SHAPES["llama7b"]
    s = 8
    ext = modeling.extended_config(base_config(d, theta, L), "Llama3", s * L, L)
    p = dict(ext.rope_parameters)
    p.update({"factor": {"factor": s * 1.01}, "low_freq_factor": {"low_freq_factor": 1.5},
              "high_freq_factor": {"high_freq_factor": 3.0}, "original": {"original_max_position_embeddings": s * L}
              }[change])
    ext.rope_parameters = p
    assert not torch.allclose(used(ext)[0], expected("Llama3", d, theta, L, s)[0], rtol=1e-5), change
    with pytest.raises(RuntimeError, match="must have"):
        methods.check(ext.to_dict(), "Llama3", s * L, L)


def test_the_original_window_pitfall_of_yarn_and_dynamic_ntk():
    """transformers' YaRN takes L from ``original_max_position_embeddings`` (a config that put L' there, or left it
    out to be read from ``max_position_embeddings`` as older code did, ramps at the wrong dimensions), and its
    dynamic NTK takes L from ``max_position_embeddings`` (a config saying L' there would not rescale until L')."""
    d, theta, L = SHAPES["llama7b"]
    s = 16
    good = modeling.extended_config(base_config(d, theta, L), "YaRN", s * L, L)
    assert good.rope_parameters["original_max_position_embeddings"] == L and good.max_position_embeddings == s * L
    wrong = LlamaConfig.from_dict(good.to_dict())
    wrong.rope_parameters = dict(good.rope_parameters, original_max_position_embeddings=s * L)
    assert not torch.allclose(used(wrong)[0], used(good)[0], rtol=1e-5)
    with pytest.raises(RuntimeError, match="must have"):
        methods.check(wrong.to_dict(), "YaRN", s * L, L)

    dyn = modeling.extended_config(base_config(d, theta, L), "DynNTK", s * L, L)
    misread = LlamaConfig.from_dict(dyn.to_dict())
    misread.max_position_embeddings = s * L
    assert torch.allclose(used(misread, 4 * L)[0], theta_i(theta, d), rtol=1e-6)  # no rescaling at 4L: wrong
    assert not torch.allclose(used(dyn, 4 * L)[0], theta_i(theta, d), rtol=1e-3)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "CT"])
def test_a_loaded_checkpoint_carries_its_method_and_the_gate_refuses_one_that_lost_it(method, tmp_path):
    """The shipped mini model extended by each method, saved and loaded back as evaluation loads it: the model
    uses the method's frequencies; the same checkpoint with its config reset to plain RoPE is refused."""
    L, s = MINI["max_position_embeddings"], 4
    out = tmp_path / method
    modeling.init_extension(ROOT / "resources/models/mini", method, s * L, L, out)
    model = modeling.load_model(out)
    factor = {"FT": 1.0, "NTK": 1.0, "DynNTK": 1.0}.get(method, s)  # NTK-aware changes the base, not a factor
    assert modeling.check_scaling(model.config, method, s * L, L) == factor
    seq = 2 * s * L if method == "DynNTK" else None
    got = used(model.config, seq)[0]
    assert torch.allclose(model.model.rotary_emb.inv_freq.double(), used(model.config)[0], rtol=1e-6)
    assert torch.allclose(got, expected(method, MINI["head_dim"], 10000.0, L, s, seq)[0], rtol=1e-5)
    cfg = json.loads((out / "config.json").read_text())
    if method != "FT":
        lost = dict(cfg, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        with pytest.raises(RuntimeError, match="must"):
            methods.check(lost, method, s * L, L)
    with pytest.raises(RuntimeError):
        methods.check(cfg, method, 2 * s * L, L)  # another window
    if METHODS[method].records_extension:
        with pytest.raises(RuntimeError, match="must record its extension"):
            methods.check({k: v for k, v in cfg.items() if k != "extension"}, method, s * L, L)


def test_dynamic_ntk_scores_a_window_the_same_whatever_was_scored_before(tmp_path):
    """transformers' dynamic RoPE keeps the frequencies of the longest sequence it has seen: without a reset, the
    perplexity at 2L after 4L would be that of 4L's scaling. Each window starts from the loaded state."""
    from pi_repro import perplexity

    L = MINI["max_position_embeddings"]
    modeling.init_extension(ROOT / "resources/models/mini", "DynNTK", 4 * L, L, tmp_path / "dyn")
    model = modeling.load_model(tmp_path / "dyn")
    docs = [torch.randint(0, MINI["vocab_size"], (5 * L,), generator=torch.Generator().manual_seed(i)) for i in (0, 1)]
    fresh = perplexity.sliding_window_nll(model, docs, 2 * L, L // 2)[0]
    perplexity.sliding_window_nll(model, docs, 4 * L, L // 2)
    after = perplexity.sliding_window_nll(model, docs, 2 * L, L // 2)[0]
    assert after == pytest.approx(fresh, rel=1e-6)


def test_the_paper_scale_methods_configuration_plans_the_yarn_comparison():
    """config/methods-paper.yaml: LLaMA-7B 2k -> 32k by PI, NTK-aware and YaRN, fine-tuned by the YaRN recipe and
    read at step 0 and 400, evaluated by YaRN's truncated protocol, and by Table 5's tasks at L. The dry run has
    each job once; the plan prices every GPU job; every published cell of the YaRN repository
    (resources/yarn/cells.csv) of a method here has exactly one counterpart in the plan (NTK-by-parts is quoted: no
    such method here), the passkey accuracies in table8, whose target plans no evaluation but the three step-400
    passkey jobs, each at YaRN's five lengths with 10 x 5 prompts per window (YaRN's 50 iterations)."""
    import re
    import subprocess
    from collections import Counter

    from pi_repro import config as C, cost, paper, targets

    cfg = C.load(ROOT / "config/methods-paper.yaml")
    hp = targets.train_hparams(cfg, cfg["extensions"][2])
    assert (hp["lr"], hp["steps"], hp["global_batch"], hp["warmup_steps"], hp["schedule"], hp["min_lr_ratio"],
            hp["betas"], hp["weight_decay"]) == (2e-5, 400, 64, 20, "linear", 0.0, [0.9, 0.95], 0.0)
    assert cfg["extensions"][2]["method"] == "YaRN" and cfg["finetune_data"] == ["pg19"]
    p = subprocess.run([sys.executable, "-m", "snakemake", "all", "--configfile", "config/methods-paper.yaml", "-n",
                        "-p"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    ppl = re.findall(r"perplexity\.py --model results/methods-paper/models/7B/(\S+) --docs \S+proofpile\S+ --windows "
                     r"([\d,]+) .* --protocol truncated", out)
    assert sorted(ppl) == sorted([("base", "2048")] + [(f"{m}-32768/step400", "2048,4096,8192,16384,32768")
                                                       for m in ("PI", "NTK", "YaRN")]
                                 + [(f"{m}-32768/step0", "32768") for m in ("PI", "NTK", "YaRN")])
    keys = re.findall(r"passkey\.py --model results/methods-paper/models/7B/(\S+) --windows ([\d,]+) --num-k 10 "
                      r"--trials 5 ", out)  # table4 at 32768 (steps 0 and 400), table8 at YaRN's lengths (step 400)
    yarn_lengths = "2048,4096,8192,16384,32768"
    assert sorted(keys) == sorted([(f"{m}-32768/step0", "32768") for m in ("PI", "NTK", "YaRN")]
                                  + [(f"{m}-32768/step400", yarn_lengths) for m in ("PI", "NTK", "YaRN")])
    assert len(re.findall(r"finetune\.py --init \S+ --method (PI|NTK|YaRN) --ctx 32768", out)) == 3
    bench = re.findall(r"benchmark\.py --model results/methods-paper/models/7B/(\S+) ", out)
    assert sorted(bench) == sorted(["base"] + [f"{m}-32768/step400" for m in ("PI", "NTK", "YaRN")])  # Table 5
    rows = cost.plan(cfg)
    assert all(r["gpu_hours"] for r in rows)
    priced = {r["what"] for r in rows if r["rule"] == "passkey"}
    assert {f"7B {m}-32768/step400 at 2048, 4096, 8192, 16384, 32768" for m in ("PI", "NTK", "YaRN")} <= priced
    assert {r["rule"] for r in rows} == {"finetune", "perplexity", "passkey", "benchmark", "ruler", "ruler_shard"}
    ruler = re.findall(r"ruler\.py --model results/methods-paper/models/7B/(\S+) --tasks \S+ --lengths ([\d,]+)", out)
    assert sorted(set(ruler)) == sorted([("base", "2048,4096")] + [(f"{m}-32768/step400", "4096,8192,16384,32768")
                                                                    for m in ("PI", "NTK", "YaRN")])  # table7: RULER
    assert len(ruler) == 1 + 3 * 2  # RULER's 500 prompts: each 7B model at 32768 in two shards of about 8.4 h
    cells = paper.load_cells(ROOT / "resources/yarn/cells.csv")
    counts = paper.counterparts(cfg, cells)
    ours = [i for i, c in enumerate(cells) if not paper.other_work(c)]
    assert len(ours) == 30 and all(counts[i] == 1 for i in ours)  # 15 perplexities (table1), 15 passkey (table8)
    assert {c["method"] for c in cells if paper.other_work(c)} == {"NTK-by-parts"}
    assert {paper.planned_cell(cfg, cells[i]) for i in ours if cells[i]["table"] == "table8"} == {
        ("passkey", "synthetic", "7B", f"{m}-32768/step400", w) for m in ("PI", "NTK", "YaRN")
        for w in (2048, 4096, 8192, 16384, 32768)}
    p = subprocess.run([sys.executable, "-m", "snakemake", "table8", "--configfile", "config/methods-paper.yaml",
                        "-n", "-p"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    jobs = Counter(re.findall(r"^\s*(?:local)?rule (\w+):$", out, re.M))
    evaluations = {"perplexity", "perplexity_shard", "passkey", "benchmark", "ruler", "summarize"}
    assert {r for r in jobs if r in evaluations} == {"passkey"} and jobs["passkey"] == 3 and jobs["table"] == 1
    keys = re.findall(r"passkey\.py --model results/methods-paper/models/7B/(\S+) --windows ([\d,]+)", out)
    assert sorted(keys) == [(f"{m}-32768/step400", "2048,4096,8192,16384,32768") for m in ("NTK", "PI", "YaRN")]
