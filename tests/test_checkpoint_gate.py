"""The evaluation job's gate (workflow/scripts/perplexity.py, as rule perplexity runs it): every checkpoint it is
given -- the base model, step 0 of an extension, a fine-tuning export -- is checked against the sha256 recorded
when it was written and against its logit probe before anything is scored; a missing record or probe is an
error, not a skipped check."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pi_repro import data, modeling
from pi_repro.io import sha256_weights, write_json
from conftest import save_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoints(tmp_path, tiny_llama):
    """A sealed base model, its PI step 0 (sealed by init_extension), a 'fine-tuned' step 2 recorded in
    finetune.json, and evaluation documents."""
    tiny_llama.save_pretrained(tmp_path / "base")
    save_word_tokenizer(tmp_path / "base", tiny_llama.config.vocab_size)  # every checkpoint carries its tokenizer
    modeling.seal_checkpoint(tmp_path / "base", 16)
    run = tmp_path / "PI-32"
    modeling.init_extension(tmp_path / "base", "PI", 32, 16, run / "step0")
    shutil.copytree(run / "step0", run / "step2")
    (run / "step2" / modeling.RECORD_FILE).unlink()  # an export's record is finetune.json, not its own
    write_json(run / "finetune.json", {"checkpoints": {"step2": {"sha256": sha256_weights(run / "step2")}}})
    rng = np.random.default_rng(0)
    data.save_docs(tmp_path / "eval.npz", ["a", "b"], [rng.integers(0, 97, 40), rng.integers(0, 97, 50)], 97)
    return {"base": tmp_path / "base", "step0": run / "step0", "step2": run / "step2", "docs": tmp_path / "eval.npz"}


def evaluate(model: Path, docs: Path, out: Path):
    return subprocess.run([sys.executable, "workflow/scripts/perplexity.py", "--model", str(model), "--docs",
                           str(docs), "--windows", "16", "--stride", "8", "--bootstrap", "10", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("name", ["base", "step0", "step2"])
def test_intact_checkpoints_are_evaluated_with_their_check_recorded(checkpoints, tmp_path, name):
    p = evaluate(checkpoints[name], checkpoints["docs"], tmp_path / "ppl.json")
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads((tmp_path / "ppl.json").read_text())
    assert rec["probe_error"] < 1e-5 and rec["model_sha256"] == sha256_weights(checkpoints[name])
    assert rec["model_record"].endswith("finetune.json" if name == "step2" else modeling.RECORD_FILE)


@pytest.mark.parametrize("name", ["base", "step0", "step2"])
@pytest.mark.parametrize("fault,message", [
    ("no probe", "probe.safetensors is missing"),
    ("no record", "is missing"),
    ("weights replaced", "weights differ from those recorded"),
    ("scaling dropped", "does not reproduce the logits"),
])
def test_faulty_checkpoints_are_refused_before_scoring(checkpoints, tmp_path, tiny_llama, name, fault, message):
    ckpt = checkpoints[name]
    if fault == "no probe":
        (ckpt / modeling.PROBE_FILE).unlink()
    elif fault == "no record":
        (ckpt.parent / "finetune.json" if name == "step2" else ckpt / modeling.RECORD_FILE).unlink()
    elif fault == "weights replaced":
        import torch
        from safetensors.torch import load_file, save_file

        w = load_file(ckpt / "model.safetensors")
        w["lm_head.weight"] = w["lm_head.weight"] + torch.randn_like(w["lm_head.weight"]) * 1e-3
        save_file(w, ckpt / "model.safetensors", metadata={"format": "pt"})
    else:  # a config edited after the fact: the known failure of a silently dropped PI factor (base: theta)
        cfg = json.loads((ckpt / "config.json").read_text())
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 500.0}
        (ckpt / "config.json").write_text(json.dumps(cfg))
    p = evaluate(ckpt, checkpoints["docs"], tmp_path / "ppl.json")
    assert p.returncode != 0 and message in p.stderr, p.stderr[-2000:]
    assert str(ckpt) in p.stderr  # the message names the checkpoint
    assert not (tmp_path / "ppl.json").exists()
