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
