#!/usr/bin/env python3
"""Check configuration files without Snakemake: YAML syntax (file, line and column named: Snakemake's own loader
says only "not valid JSON or YAML"), then the schema and semantic checks the workflow runs before any job.

    python workflow/scripts/check_config.py config/paper.yaml my-config.yaml
    python workflow/scripts/check_config.py --print config/table4-regimes.yaml   # a config with `extends`, merged
"""
import argparse
import sys

import _common  # noqa: F401
import yaml
from pi_repro import config as C
from pi_repro import targets  # noqa: E402


def check(path: str, show: bool = False) -> str | None:
    """None if ``path`` is a valid configuration, else the message naming the problem; with ``show``, the config
    (merged with the one it ``extends``) printed as YAML."""
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
        C.validate(cfg)  # a config that extends another is merged with it first, in place
    except targets.ConfigError as e:
        return f"{path}: {e}"
    if show:
        print(yaml.safe_dump(cfg, sort_keys=False, width=120), end="")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--print", action="store_true", dest="show",
                    help="print each config as the workflow reads it (merged with the one it extends), not 'valid'")
    a = ap.parse_args()
    problems = [m for m in (check(p, a.show) for p in a.configs) if m]
    for m in problems:
        print(m, file=sys.stderr)
    if not problems and not a.show:
        print("valid")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
