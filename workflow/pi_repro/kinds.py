"""Table kinds: a config's `tables:` entry names its kind; a kind says which evaluation records the table needs
(``cells``, read while the DAG is built: no heavy imports here) and how the table is laid out from them
(``frame``, pandas, at table time). Adding a table of a new kind is one class here, one evaluation task (rule,
script, library module) and one config entry; see docs/adding-a-table.md.

A cell is ``(task, dataset, size, model, window)``: the evaluation ``task`` of checkpoint ``model``
(``base`` or ``{method}-{ctx}[-{tag}]/step{N}``) of ``size`` on ``dataset``, read at ``window``.
"""
from __future__ import annotations

from . import config as C


class Windows:
    """Perplexity of every model at every evaluation window up to its own (the paper's Tables 1 and 2). Base
    models ("None" rows) are evaluated up to the entry's ``extrapolate_to`` of their size, L if none."""

    task = "ppl"

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        _check_dataset(cfg, name, spec)
        windows = cfg["perplexity"]["windows"]
        for size, w in spec.get("extrapolate_to", {}).items():
            if size not in cfg["sizes"]:
                C.fail(f"tables.{name}.extrapolate_to.{size}", "unknown size")
            if w not in windows:
                C.fail(f"tables.{name}.extrapolate_to.{size}", f"{w} is not one of perplexity.windows {windows}")

    def largest_window(self, cfg: dict, spec: dict, size: str) -> int:
        return spec.get("extrapolate_to", {}).get(size, cfg["base_window"])

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for size in cfg["sizes"]:
            models = [("base", self.largest_window(cfg, spec, size))]
            models += [(C.final_model(e), e["ctx"]) for e in cfg["extensions"] if e["size"] == size and not e.get("tag")]
            for model, top in models:
                out += [(self.task, spec["dataset"], size, model, w) for w in sorted(cfg["perplexity"]["windows"])
                        if w <= top]
        return out

    def frame(self, records: list[dict]):
        from . import tables

        return tables.windows_table(tables.cells_frame(records))

    def note(self, records: list[dict]) -> str:
        return (f"Sliding-window perplexity on {_datasets(records)} (stride {records[0]['stride']}); columns: "
                "evaluation window; '-': not evaluated (beyond the model's window). None = base model "
                "(extrapolation beyond its window).")


class Steps:
    """Perplexity of the listed extensions at their own window after each exported fine-tuning step, step 0
    included (the paper's Table 3)."""

    task = "ppl"

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        _check_dataset(cfg, name, spec)
        for i, row in enumerate(spec["rows"]):
            if C.find_extension(cfg, row["size"], row["method"], row["ctx"]) is None:
                C.fail(f"tables.{name}.rows[{i}]", f"no extension {row} in extensions")

    def largest_window(self, cfg: dict, spec: dict, size: str) -> int:
        return cfg["base_window"]

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = C.find_extension(cfg, row["size"], row["method"], row["ctx"])
            out += [(self.task, spec["dataset"], row["size"], f"{C.extension_name(ext)}/step{n}", ext["ctx"])
                    for n in sorted(ext["checkpoints"])]
        return out

    def frame(self, records: list[dict]):
        from . import tables

        return tables.steps_table(tables.cells_frame(records, only_model_window=True))

    def note(self, records: list[dict]) -> str:
        return (f"Perplexity on {_datasets(records)} (stride {records[0]['stride']}) at each model's extended "
                "window; columns: fine-tuning steps.")


KINDS = {"windows": Windows(), "steps": Steps()}


def _check_dataset(cfg: dict, name: str, spec: dict) -> None:
    ds = spec["dataset"]
    if ds not in cfg["datasets"]:
        C.fail(f"tables.{name}.dataset", f"unknown dataset {ds!r}")
    if "eval" not in cfg["datasets"][ds]:
        C.fail(f"datasets.{ds}", f"{name} evaluates on it, so it needs an eval block")


def _datasets(records: list[dict]) -> str:
    return ", ".join(sorted({r["dataset"] for r in records}))
