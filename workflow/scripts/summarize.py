#!/usr/bin/env python3
"""Summaries of the test split by one summarization-fine-tuned checkpoint (rule summarize: Table 6): the paper's
prompt with the document cut to the model's window, sampled (temperature, top-p) and seeded, batched."""
import argparse
import json
import time
from pathlib import Path

import _common  # noqa: F401  (puts the library on the path)
from pi_repro import modeling, summarization
from pi_repro.io import atomic_path, read_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", required=True, help="the summarization fine-tune's finetune.json")
    ap.add_argument("--spec", type=json.loads, required=True, help="the summarization protocol (JSON)")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="one JSON line per document: id, reference, summary")
    a = ap.parse_args()
    run = read_json(a.manifest)
    model_dir = Path(a.manifest).parent / run["final"]
    model, facts = modeling.load_for_eval(model_dir)
    model.eval()
    tok = modeling.load_tokenizer(model_dir)
    spec, g = a.spec, a.spec["generate"]
    docs = summarization.documents(a.corpus, "test", spec.get("test_docs"), a.seed)
    window = facts["model_window"]
    # the prompt leaves room for the generated summary, as training left room for the reference
    examples = summarization.encode_docs(tok, docs, window, dict(spec, summary_tokens=g["max_new_tokens"]),
                                         with_summary=False)
    t = time.time()
    outs = summarization.generate(model, tok, [e.input_ids for e in examples], g["max_new_tokens"], g["temperature"],
                                  g["top_p"], a.seed, g["batch_size"], progress=True)
    secs = time.time() - t
    with atomic_path(a.out) as tmp, open(tmp, "w") as f:
        for d, e, s in zip(docs, examples, outs):
            f.write(json.dumps({"id": d["id"], "summary": s, "reference": d["summary"],
                                "prompt_tokens": len(e.input_ids),
                                "doc_tokens_kept": e.doc_kept, "doc_tokens": e.doc_len, "model": str(model_dir),
                                "model_sha256": facts["model_sha256"], "window": window, "seed": a.seed}) + "\n")
    print(f"{model_dir}: {len(docs)} summaries at window {window} in {secs:.1f} s; first: {outs[0]!r}")


if __name__ == "__main__":
    main()
