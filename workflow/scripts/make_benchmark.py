#!/usr/bin/env python3
"""Build one benchmark task from a dataset's held-out test split, in lm-evaluation-harness's own format: the
items (JSON lines) and the task definition (YAML) that reads them (rule benchmark_task)."""
import argparse
import json

import _common  # noqa: F401
from pi_repro import benchmarks, data, modeling
from pi_repro.io import atomic_path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True)
    ap.add_argument("--recipe", type=json.loads, required=True, help="the task's build block of the config (JSON)")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--items", required=True)
    ap.add_argument("--yaml", required=True)
    a = ap.parse_args()
    r = a.recipe
    docs = data.read_corpus(a.corpus)
    test, train = ([d["text"] for d in docs if d["split"] == s] for s in ("test", "train"))
    if not test:
        raise SystemExit(f"{a.corpus}: no test documents to build {a.task} from")
    items = benchmarks.cloze_items(test, train, modeling.load_tokenizer(a.tokenizer), r["items"],
                                   r.get("context_tokens", 64), a.seed, max_rest_words=r.get("rest_words", 8),
                                   distractors=r.get("distractors", "band"))
    with atomic_path(a.items) as tmp:
        tmp.write_text("".join(json.dumps(it) + "\n" for it in items))
    with atomic_path(a.yaml) as tmp:
        tmp.write_text(benchmarks.task_yaml(a.task, a.items))
    print(f"{a.task}: {len(items)} items from {len(test)} test documents of {a.corpus}")


if __name__ == "__main__":
    main()
