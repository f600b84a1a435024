#!/usr/bin/env python3
"""Copy a base model pretrained by the pipeline into resources/ with SHA256SUMS and its provenance.

    snakemake --configfile config/pretrain.yaml --cores all base_models
    python workflow/scripts/ship_base_model.py results/pretrain/models/mini/base resources/models/mini
"""
import argparse
import json
import shutil
from pathlib import Path

import yaml

import _common  # noqa: F401
from pi_repro import modeling, passkey
from pi_repro.io import sha256_file

FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]


def passkey_skill(model_dir: Path) -> str:
    model, tok = modeling.load_model(model_dir).eval(), modeling.load_tokenizer(model_dir)
    L = model.config.max_position_embeddings
    lines = []
    for intro, name in ((True, "the paper's prompt"), (False, "the paper's prompt without its intro")):
        rows = passkey.accuracy(model, tok, L, passkey.k_grid(L, 4), trials=10, seed=0, intro=intro)
        cells = ", ".join(f"k={r['k_actual']}: {r['correct']}/{r['trials']}" for r in rows)
        lines.append(f"  - {name}: {cells}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--config", default="config/pretrain.yaml")
    a = ap.parse_args()
    src, dest = Path(a.src), Path(a.dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = [f for f in FILES if (src / f).is_file()]
    for f in names:
        shutil.copy2(src / f, dest / f)
    (dest / "SHA256SUMS").write_text("".join(f"{sha256_file(dest / f)}  {f}\n" for f in names))
    log = src.parent / "pretrain-log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    losses = [r for r in records if "loss" in r]
    cfg = json.loads((src / "config.json").read_text())
    skill = passkey_skill(dest)
    spec = yaml.safe_load(Path(a.config).read_text())["sizes"][src.parent.name]["base"]  # src: …/models/{size}/base
    layout = spec.get("passkey_docs", "paper")
    (dest / "PROVENANCE.md").write_text(f"""# Base model `{dest.name}` (shipped)

Pretrained from scratch by this project's own rule `base_model` (source: pretrain), then copied here by
`workflow/scripts/ship_base_model.py`. Regenerate it with:

    snakemake --configfile {a.config} --cores all base_models
    python workflow/scripts/ship_base_model.py {src} {dest}

- config: `{a.config}` (sha256 {sha256_file(a.config)})
- architecture: LLaMA, hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} heads
  (head dim {cfg['hidden_size'] // cfg['num_attention_heads']}), vocab {cfg['vocab_size']}, window L = {cfg['max_position_embeddings']},
  rope_parameters {cfg.get('rope_parameters')}
- training: {losses[-1]['step'] if losses else '?'} logged steps; last logged loss {losses[-1]['loss'] if losses else '?'}
- data: training splits of the shipped corpora (resources/corpora, see its README) plus passkey-format documents
  (`passkey_fraction` {spec.get('passkey_fraction', 0)}, `passkey_docs: {layout}`; see `pi_repro.pretrain.mixture`)
- in-context retrieval within its window L (greedy decoding, 10 random keys per k, seed 0; k = tokens from the
  needle to the end of the prompt; measured when shipped, re-checked by `tests/test_passkey.py`):
{skill}
- licence of the weights: derived from LGPL-2.1 Coq sources and public-domain novels; distributed under LGPL-2.1
- checksums: SHA256SUMS (verified by the pipeline before use)
""")
    print(f"shipped {len(names)} files to {dest}")


if __name__ == "__main__":
    main()
