#!/usr/bin/env python3
"""Download the hub datasets of lm-evaluation-harness tasks into the cache named by HF_DATASETS_CACHE, by building
each task once as the harness does (rule fetch_benchmarks; needs internet); records what each task holds."""
import argparse
import os

import _common  # noqa: F401
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", required=True, help="comma-separated task names")
    ap.add_argument("--include", default="", help="a folder of task definitions the harness does not ship")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import lm_eval
    from lm_eval.tasks import TaskManager, get_task_dict

    tm = TaskManager(include_path=a.include or None)
    tasks = get_task_dict(a.tasks.split(","), tm)
    facts = {}
    for name, task in tasks.items():
        docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
        facts[name] = {"dataset_path": task.config.dataset_path, "dataset_name": task.config.dataset_name,
                       "dataset_kwargs": task.config.dataset_kwargs, "docs": len(docs),
                       "fingerprint": getattr(docs, "_fingerprint", None)}
        print(name, facts[name])
    write_json(a.out, {"harness_version": lm_eval.__version__, "cache": os.environ.get("HF_DATASETS_CACHE"),
                       "tasks": facts})


if __name__ == "__main__":
    main()
