#!/usr/bin/env python3
"""What every SLURM job of a configuration asks (rule cluster_plan): a Markdown table, from the same functions
that give the rules their resources, and the settings a user sets. Prints it and writes it to --out."""
import argparse
import json

import _common  # noqa: F401
import pandas as pd
from pi_repro import cost, sizing  # noqa: E402

HEADER = {"job": "Job", "count": "Jobs", "partition": "Partition", "nodes": "Nodes", "gpus": "GPUs",
          "cpus": "CPUs", "mem_mb": "Memory (MB)", "runtime": "Time per job (min)",
          "submissions": "Submissions"}


def render(cfg: dict) -> str:
    c = sizing.cluster(cfg)
    plan = pd.DataFrame(cost.cluster_plan(cfg)).rename(columns=HEADER)
    settings = [f"time limit {c['time_limit_min']} min" if c.get("time_limit_min") else "no time limit",
                f"stop {c['stop_margin_min']} min before it", f"{c['failure_retries']} failure retries"]
    if c.get("node_mem_mb"):
        settings.insert(0, f"memory per full node {c['node_mem_mb']} MB")
    retries = sizing.finetune_retries(cfg)
    return (f"Cluster plan of config `{cfg['run']}` (`cluster`: {', '.join(settings)}; fine-tune retries: "
            f"{retries if retries is not None else 'the profile default'}).\n\n"
            + plan.to_markdown(index=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=json.loads, required=True, help="the validated configuration, as JSON")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    text = render(a.config)
    print(text)
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
