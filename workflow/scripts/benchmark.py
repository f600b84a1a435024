#!/usr/bin/env python3
"""Zero-shot benchmarks of one checkpoint through lm-evaluation-harness at the original window, its position
scaling in force (rule benchmark): per task acc, acc_norm and their standard errors, and the harness's
per-sample log (every option's log-likelihood) for audits."""
import argparse
import json
from pathlib import Path

import _common
from pi_repro import benchmarks, modeling
from pi_repro.io import write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=lambda v: dict(json.loads(v)), required=True,
                    help="[[name, label], ...] in the table's order (JSON)")
    ap.add_argument("--include", default="", help="comma-separated folders of task definitions")
    ap.add_argument("--window", type=int, required=True, help="inputs limited to this many tokens (L)")
    ap.add_argument("--base-window", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--finetune-data", default="", help="comma-separated datasets the model was fine-tuned on")
    a = _common.eval_args(ap).parse_args()
    model, facts = modeling.load_for_eval(Path(a.model))
    factor = modeling.check_scaling(model.config, a.coords["method"], a.coords["ctx"], a.base_window)
    tok = modeling.load_tokenizer(a.model)
    include = ",".join(p for p in a.include.split(",") if p) or None
    res = benchmarks.run_harness(model, tok, list(a.tasks), include, a.window, a.batch_size, a.seed)
    import lm_eval

    tasks = {}
    for name, label in a.tasks.items():
        r = res["results"][name]
        tasks[name] = {"label": label, "n": res["n-samples"][name]["effective"],
                       **{m: r[f"{m},none"] for m in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
                          if f"{m},none" in r}}
        print(f"{name} ({label}): acc {r['acc,none']:.4f} ± {r['acc_stderr,none']:.4f}"
              + (f", acc_norm {r['acc_norm,none']:.4f}" if "acc_norm,none" in r else "") + f" (n = {tasks[name]['n']})")
    samples = {name: [benchmarks.sample_record(s) for s in res["samples"][name]] for name in a.tasks}
    write_json(a.out, dict(**a.coords, **facts, window=a.window, scale_factor=factor,
                           finetune_data=[d for d in a.finetune_data.split(",") if d],
                           harness_version=lm_eval.__version__,
                           task_versions={n: res["versions"].get(n) for n in a.tasks}, task_order=list(a.tasks),
                           tasks=tasks, samples=samples))


if __name__ == "__main__":
    main()
