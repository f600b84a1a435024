"""The shipped configuration files (config/*.yaml): each states its own settings once. A variant names the config it
extends and states only what differs (`extends`, a JSON Merge Patch: config/README.md); the paper configuration
extends nothing."""
import json
from pathlib import Path

import pytest
import yaml

from pi_repro import config as C

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
PAPER = ROOT / "config/paper.yaml"
MAX_DUPLICATED = 0.10


def raw(path: Path) -> dict:
    """A config file's own text (not merged)."""
    return yaml.safe_load(path.read_text())


def family(path: Path) -> str:
    """`paper` for config/paper.yaml and any config that extends it (directly or through others), else `mini`."""
    seen = set()
    while path.resolve() != PAPER.resolve():
        cfg = raw(path)
        if C.EXTENDS not in cfg or path.resolve() in seen:
            return "mini"
        seen.add(path.resolve())
        path = ROOT / cfg[C.EXTENDS]
    return "paper"


def leaves(cfg: dict, prefix: tuple = ()) -> set:
    """(key path, value) of every leaf of a mapping, a list being one value."""
    out = set()
    for k, v in cfg.items():
        if isinstance(v, dict) and v:
            out |= leaves(v, (*prefix, str(k)))
        else:
            out.add(((*prefix, str(k)), json.dumps(v, sort_keys=True)))
    return out


def own_settings(cfg: dict) -> set:
    """The settings a config file's own text states (not merged, `extends` aside). A null in a file that extends
    another removes the key it names (merge patch): a deletion states no setting, so it is neither counted nor
    duplicated."""
    own = leaves({k: v for k, v in cfg.items() if k != C.EXTENDS})
    return {s for s in own if s[1] != "null"} if C.EXTENDS in cfg else own


def duplication(configs: dict[str, tuple[dict, str]]) -> dict[str, tuple[int, int]]:
    """Per config (name -> (its own text, its family)): (duplicated settings, settings). A setting is duplicated
    when another config of the same family states the same key path with the same value. The paper's settings are
    its own (it inherits nothing from the mini configs): a value the mini family shares with it (e.g. a stride) is
    not duplication."""
    own = {name: own_settings(cfg) for name, (cfg, _) in configs.items()}
    out = {}
    for name, mine in own.items():
        fam = configs[name][1]
        others = set().union(*(s for n, s in own.items() if n != name and configs[n][1] == fam))
        out[name] = (len(mine & others), len(mine))
    return out


def test_duplicated_settings_are_below_a_tenth_of_all():
    per_file = duplication({p.name: (raw(p), family(p)) for p in CONFIGS})
    dup, total = (sum(c[i] for c in per_file.values()) for i in (0, 1))
    report = "\n".join(f"  {n}: {d} of {t} settings duplicated" for n, (d, t) in per_file.items())
    assert total and dup / total < MAX_DUPLICATED, (
        f"{dup} of {total} settings ({dup / total:.1%}) are stated in another config file of the same family "
        f"(at most {MAX_DUPLICATED:.0%}): make the variant an overlay (`extends`) stating only what differs\n{report}")


def test_the_duplication_measure_counts_a_copy_within_a_family_only():
    """A mini overlay restating the default's perplexity protocol duplicates its 4 settings (and the default's 4
    are duplicated by it); its deletion counts for nothing; the same values in the paper's family are its own."""
    default = raw(ROOT / "config/config.yaml")
    copy = {"extends": "config/config.yaml", "perplexity": default["perplexity"], "datasets": {"manpages": None}}
    got = duplication({"config.yaml": (default, "mini"), "copy.yaml": (copy, "mini"),
                       "paper.yaml": ({"perplexity": default["perplexity"]}, "paper")})
    assert got["copy.yaml"] == (4, 4) and got["config.yaml"][0] == 4 and got["paper.yaml"] == (0, 4)
    assert family(ROOT / "config/config.yaml") == "mini" and family(ROOT / "config/pretrain-heads.yaml") == "mini"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_resolves_and_validates(path):
    cfg = raw(path)
    assert isinstance(cfg, dict), f"{path.name}: not a mapping of configuration keys"
    merged = C.resolve_extends(cfg)
    assert C.EXTENDS not in merged
    C.validate(merged)


def test_the_paper_configuration_extends_nothing():
    assert C.EXTENDS not in raw(PAPER), "config/paper.yaml states the paper's own settings: it extends no other"
    assert family(PAPER) == "paper"
