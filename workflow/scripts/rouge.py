#!/usr/bin/env python3
"""ROUGE-1/2/L F1 of one model's summaries (rule rouge) or of the LEAD baseline (rule rouge_lead) against the
references, with rouge-score (stemming on): per document and the corpus score (mean, in points)."""
import argparse
import json

import _common  # noqa: F401  (puts the library on the path)
from pi_repro import summarization
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--summaries", help="JSON lines of rule summarize (id, summary, reference)")
    ap.add_argument("--lead", action="store_true", help="score the LEAD baseline of the corpus's test split")
    ap.add_argument("--corpus", help="the corpus (LEAD)")
    ap.add_argument("--spec", type=json.loads, required=True, help="the summarization protocol (JSON)")
    ap.add_argument("--finetune", help="the summarization fine-tune's manifest (recorded in the result)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coords", type=json.loads, default={}, help="the record's coordinates (JSON)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.lead:
        docs = summarization.documents(a.corpus, "test", a.spec.get("test_docs"), a.seed)
        section = a.spec["lead"]["section"]
        rows = [{"id": d["id"], "summary": summarization.lead(d["text"], section), "reference": d["summary"]}
                for d in docs]
        source = {"baseline": "LEAD", "section": section, "corpus": a.corpus}
        protocol = {}
    else:
        with open(a.summaries) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        first = rows[0] if rows else {}
        source = {"summaries": a.summaries, "summarizer": first.get("model"), "summarizer_sha256":
                  first.get("model_sha256"), "window": first.get("window"), "finetune": a.finetune}
        protocol = {"generate": a.spec["generate"], "summary_tokens": a.spec["summary_tokens"],
                    "bootstrap": a.spec["bootstrap"]}
    per_doc = summarization.rouge([r["summary"] for r in rows], [r["reference"] for r in rows])
    scores = summarization.corpus_scores(per_doc)
    record = {**a.coords, **source, "n_docs": len(rows), "scores": scores, "rouge": "rouge-score 0.1.2, stemming",
              **protocol, "per_doc": [{"id": r["id"], **s} for r, s in zip(rows, per_doc)]}
    write_json(a.out, record)
    print(" ".join(f"{summarization.ROUGE_LABELS[k]} {v:.2f}" for k, v in scores.items()),
          f"over {len(rows)} documents")


if __name__ == "__main__":
    main()
