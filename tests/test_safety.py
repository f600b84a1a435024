"""Secrets and code safety: no remote code, weights only as safetensors, the Hugging Face token never written
anywhere, names that reach paths and shell commands validated."""
import re
from pathlib import Path

import pytest
import yaml
from pi_repro import config as C
from pi_repro import targets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted(p for d in ("workflow", "resources") for p in (ROOT / d).rglob("*.py")) + [ROOT / "Snakefile"] + \
    sorted((ROOT / "workflow/rules").glob("*.smk"))


def test_no_remote_code_and_no_pickled_weights():
    """Nothing runs code from a model repository, and nothing unpickles weights: checkpoints load as safetensors
    (or torch.load with weights_only=True)."""
    assert len(CODE) > 30
    for path in CODE:
        text = path.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        for m in re.finditer(r"torch\.load\((.*)", text):
            assert "weights_only=True" in m.group(1), f"{path}: {m.group(0)}"
    modeling = (ROOT / "workflow/pi_repro/modeling.py").read_text()
    assert "use_safetensors=True" in modeling


@pytest.mark.slow
def test_the_hf_token_is_never_written(smoke_run):
    """The shared smoke run ran with a recognisable fake HF_TOKEN in its environment (conftest): no file of the
    run (records, logs, provenance, audit, report pages, the Snakemake output) contains it."""
    from conftest import FAKE_HF_TOKEN

    files = [p for p in smoke_run.rglob("*") if p.is_file()]
    assert len(files) > 100 and any(p.name == "snakemake.log" for p in files)
    token = FAKE_HF_TOKEN.encode()
    leaked = [str(p) for p in files if token in p.read_bytes()]
    assert not leaked, leaked


@pytest.mark.parametrize("where, name", [("datasets", "x; rm -rf ~"), ("sizes", "7B $(id)"),
                                         ("datasets", "../escape"), ("sizes", "a b")])
def test_names_that_reach_paths_and_shell_commands_are_validated(where, name):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    first = next(iter(cfg[where]))
    cfg[where][name] = cfg[where][first]
    with pytest.raises(targets.ConfigError, match=rf"config error at {where}: .*does not match"):
        C.validate(cfg)


def test_a_table_tag_with_shell_characters_is_refused():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["extensions"][0]["tag"] = "a;b"
    with pytest.raises(targets.ConfigError, match=r"extensions\[0\]\.tag"):
        C.validate(cfg)
