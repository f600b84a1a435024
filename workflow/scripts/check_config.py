#!/usr/bin/env python3
"""Check configuration files without Snakemake: YAML syntax (file, line and column named: Snakemake's own loader
says only "not valid JSON or YAML"), then the schema and semantic checks the workflow runs before any job.

    python workflow/scripts/check_config.py config/paper.yaml my-config.yaml
"""
import argparse
import sys

import yaml

import _common  # noqa: F401
from pi_repro import config as C


def check(path: str) -> str | None:
    """None if ``path`` is a valid configuration, else the message naming the problem."""
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except OSError as e:
        return f"{path}: {e.strerror}"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        return f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}"
    if not isinstance(cfg, dict):
        return f"{path}: not a mapping of configuration keys"
    try:
        C.validate(cfg)
    except C.ConfigError as e:
        return f"{path}: {e}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+")
    problems = [m for m in map(check, ap.parse_args().configs) if m]
    for m in problems:
        print(m, file=sys.stderr)
    if not problems:
        print("valid")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
