"""Table kinds: a config's `tables:` entry names its kind, and the kind owns everything about its tables: the
schema of its entry and its checks (``schema``, ``validate``), the evaluation records it needs (``cells``, read while
the DAG is built: no heavy imports here), its evaluation task (pi_repro.tasks: the rule that runs it, what a job
costs and which rules ask GPUs), how the table is laid out (``frame``, pandas, at table time) and captioned
(``note``), the paper's findings it carries (``findings``), and how the paper's published cells map onto its cells
(``paper_cell``, ``tolerance``). A kind that leaves out one of ``Kind.REQUIRED`` is refused when it is registered.
Adding a kind is one class here (or in a plugin module a config names under ``plugins``) with ``@register``; see
docs/adding-a-table.md.

A cell is ``(task, dataset, size, model, window)``: the evaluation ``task`` of checkpoint ``model``
(``base`` or ``{method}-{ctx}[-{tag}]/step{N}``) of ``size`` on ``dataset``, read at ``window``.
"""
from __future__ import annotations

from types import SimpleNamespace

from . import sizing, summarization, targets
from .methods import METHODS
from .registry import registrar
from .targets import ROOT, fail
from .tasks import TASKS

KINDS: dict = {}


class Kind:
    """A table kind. Subclasses define every name of ``REQUIRED``; the rest have defaults."""

    REQUIRED = ("task", "fmt", "schema", "tolerance", "findings_read", "validate", "cells", "frame", "note",
                "findings", "paper_cell")
    task: str  # its evaluation task (pi_repro.tasks.TASKS)
    fmt: str  # how the Markdown and LaTeX show a cell
    schema: dict  # JSON schema its `tables:` entry must also match (with the generic one, config.schema.yaml)
    tolerance: dict | None  # the audit's pass band for the paper's cells when the entry gives none
    findings_read: dict  # finding id -> what it reads: printed n/a when the config has no table of this kind
    figure: str | None = None  # the figure (figures/{figure}.png) drawn from every table of the kind
    tolerances: tuple = ("relative", "absolute", "grid_steps")  # the forms a `tolerance` of its entry may take

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        """Checks beyond the schema (fail names the key)."""

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        """Every cell (task, dataset, size, model, window) of a table of this kind."""

    def frame(self, records: list[dict], **layout):
        """The table (a DataFrame) from its records (and the layout from ``layout``)."""

    def note(self, records: list[dict]) -> str:
        """The caption: the protocol, read from the records."""

    def findings(self, name: str, table: dict, run: SimpleNamespace) -> list[dict]:
        """The paper's findings on one table (``table``: kind, dataset, frame; ``run``: every table, L, hub_sizes,
        untrained), each printed PASS / FAIL / n/a with its numbers (pi_repro.findings)."""

    def paper_cell(self, cfg: dict, spec: dict, cell: dict, ext: dict | None) -> tuple | None:
        """The cell of this table that stands for a published cell (pi_repro.paper; ``ext``: the extension it names,
        None for the base model), or None."""

    def judge(self, cfg: dict, spec: dict, cell: dict, ext: dict | None, frame, tol: dict) -> dict | None:
        """The audit's verdict on a published cell of this table (pi_repro.paper.side_by_side; ``frame``: the table
        as written, its CSV read back, None if absent; ``ext``: the extension the cell names, None for the base
        model): {"ours", "diff", "status", "why"}. None (the default): the generic rule, the value of the cell's row
        and column against ``tol`` (pi_repro.paper.judge)."""
        return None

    def paper_columns(self, cfg: dict) -> list[str] | None:
        """The column labels a published cell adds to its key (one record holds several columns), if any."""
        return None

    def layout(self, cfg: dict, spec: dict) -> dict:
        """What the table job lays out beside the records (passed to ``frame``)."""
        return {}

    def extra_records(self, cfg: dict, spec: dict, run_dir: str) -> list[str]:
        """Records of no checkpoint the table reads too (a summarization table's LEAD baseline)."""
        return []

    def display(self, frame):
        """The frame as shown (None: each cell formatted with ``fmt``)."""
        return None

    def preflight(self, cfg: dict, spec: dict, counts: dict) -> list[str]:
        """Problems found in the data before anything runs (``counts``: documents per split of each local dataset)."""
        return []


def _known_task(name: str, cls) -> None:
    if cls.task not in TASKS:
        raise TypeError(f"table kind {name!r}: unknown task {cls.task!r} (pi_repro.tasks: {', '.join(TASKS)})")


# Class decorator: add a kind to KINDS; refuse one that does not define all of ``Kind.REQUIRED``, names an unknown
# task or takes a name twice.
register = registrar(KINDS, Kind, "table kind", "pi_repro.kinds.Kind; docs/adding-a-table.md", _known_task)


_MODEL_ROW = {"type": "object", "additionalProperties": False, "required": ["size", "method"],
              "properties": {"size": {"type": "string"}, "method": {"type": "string"},
                             "ctx": {"$ref": "#/$defs/posint"}, "tag": {"type": "string"}}}


_STEPS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "integer", "minimum": 0}}


def _rows(items: dict, description: str) -> dict:
    return {"type": "array", "items": dict(items, description=description)}


@register("windows")
class Windows(Kind):
    """Perplexity of every model at every evaluation window up to its own (the paper's Tables 1 and 2). Base
    models ("None" rows) are evaluated up to the entry's ``extrapolate_to`` of their size, L if none."""

    task = "ppl"
    fmt = "{:.2f}"  # how the Markdown and LaTeX show a cell
    schema = {"required": ["dataset"]}
    tolerance = {"relative": 0.03}
    findings_read = {"0": "base model converged (windows tables)", "1": "extrapolation fails (windows tables)",
                     "1m": "magnitude of the failure (windows tables)", "3": "PI after fine-tuning (windows tables)"}
    figure = "ppl_vs_window"

    def findings(self, name, table, run):
        from .findings import windows_findings

        return windows_findings(name, table["frame"], run.L, run.hub_sizes, run.untrained)

    def paper_cell(self, cfg, spec, cell, ext):
        model = "base" if ext is None else targets.final_model(ext)
        return (self.task, spec["dataset"], cell["size"], model, int(cell["column"]))

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        _check_dataset(cfg, name, spec)
        windows = cfg["perplexity"]["windows"]
        for size, w in spec.get("extrapolate_to", {}).items():
            if size not in cfg["sizes"]:
                fail(f"tables.{name}.extrapolate_to.{size}", "unknown size")
            if w not in windows:
                fail(f"tables.{name}.extrapolate_to.{size}", f"{w} is not one of perplexity.windows {windows}")

    def largest_window(self, cfg: dict, spec: dict, size: str) -> int:
        return spec.get("extrapolate_to", {}).get(size, cfg["base_window"])

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for size in cfg["sizes"]:
            models = [("base", self.largest_window(cfg, spec, size))]
            models += [(targets.final_model(e), e["ctx"]) for e in cfg["extensions"]
                       if e["size"] == size and not e.get("tag")]
            for model, top in models:
                out += [(self.task, spec["dataset"], size, model, w) for w in sorted(cfg["perplexity"]["windows"])
                        if w <= top]
        return out

    def frame(self, records: list[dict]):
        from . import tables

        return tables.windows_table(tables.cells_frame(records))

    def note(self, records: list[dict]) -> str:
        sliding = _ppl_protocol(records) == "sliding"
        return (f"{'Sliding-window perplexity' if sliding else 'Perplexity'} on {_datasets(records)} "
                f"{_ppl_how(records)}; columns: "
                "evaluation window; '-': not evaluated (beyond the model's window). None = base model "
                "(extrapolation beyond its window).")


@register("steps")
class Steps(Kind):
    """Perplexity of the listed extensions at their own window after each exported fine-tuning step, step 0
    included (the paper's Table 3)."""

    task = "ppl"
    fmt = "{:.2f}"  # how the Markdown and LaTeX show a cell
    schema = {"required": ["dataset", "rows"], "properties": {"rows": _rows(
        {"type": "object", "additionalProperties": False, "required": ["size", "method", "ctx"],
         "properties": {"size": {"type": "string"}, "method": {"$ref": "#/$defs/method"},
                        "ctx": {"$ref": "#/$defs/posint"}}}, "an extension, one row, at every exported step")}}
    tolerance = {"relative": 0.03}
    findings_read = {"2": "PI without fine-tuning (a steps table and a windows table on its dataset)"}

    def findings(self, name, table, run):
        from .findings import methods_findings, steps_findings

        same = [(n, t) for n, t in run.tables.items() if t["kind"] == "windows" and t["dataset"] == table["dataset"]]
        windows = {"name": same[0][0], "frame": same[0][1]["frame"]} if same else None
        return steps_findings(name, table["frame"], windows, run.L) + methods_findings(name, table["frame"])

    def paper_cell(self, cfg, spec, cell, ext):
        return _step_cell(self.task, spec["dataset"], cell, ext)

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        _check_dataset(cfg, name, spec)
        for i, row in enumerate(spec["rows"]):
            if targets.find_extension(cfg, row["size"], row["method"], row["ctx"]) is None:
                fail(f"tables.{name}.rows[{i}]", f"no extension {row} in extensions")

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = targets.find_extension(cfg, row["size"], row["method"], row["ctx"])
            out += [(self.task, spec["dataset"], row["size"], f"{targets.extension_name(ext)}/step{n}", ext["ctx"])
                    for n in sorted(ext["checkpoints"])]
        return out

    def frame(self, records: list[dict]):
        from . import tables

        return tables.steps_table(tables.cells_frame(records, only_model_window=True))

    def note(self, records: list[dict]) -> str:
        return (f"Perplexity on {_datasets(records)} {_ppl_how(records)} at each model's extended "
                "window; columns: fine-tuning steps.")


@register("passkey")
class Passkey(Kind):
    """The effective context window k_max of passkey retrieval (the paper's Table 4): one row per (model, window k
    spans), one column per fine-tuning step. Rows name the base model (method None, at any windows: past L it is
    extrapolation) or an extension at its exported steps."""

    task = "passkey"
    fmt = "{:.0f}"
    schema = {"required": ["rows"], "properties": {"rows": _rows(
        {**_MODEL_ROW, "properties": {
            **_MODEL_ROW["properties"],
            "steps": _STEPS,
            "windows": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/posint"},
                        "description": "the windows k spans (one evaluation each; default: the model's own, L for "
                                       "the base model and CT); beyond the model's window it is extrapolation"}}},
        "one row per (model, window): method None is the base model (no ctx), any other an extension (size, "
        "method, ctx[, tag]) at the listed steps (default: every exported step but 0 for PI/FT, as the paper's "
        "Table 4; the final step for CT)")}}
    tolerance = {"grid_steps": 1}  # one step of the k grid (window / passkey.num_k)
    findings_read = {"4a": "PI's k_max reaches L' after fine-tuning (passkey tables)",
                     "4b": "FT's k_max does not extend past about L (passkey tables)",
                     "4c": "the base model's k_max does not pass L (passkey tables)"}
    figure = "passkey"

    def findings(self, name, table, run):
        from .findings import passkey_findings, passkey_methods_findings

        return passkey_findings(name, table["frame"], run.L, self.findings_read) + \
            passkey_methods_findings(name, table["frame"], run.L)

    def paper_cell(self, cfg, spec, cell, ext):
        return _step_cell(self.task, TASKS[self.task].dataset, cell, ext)

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                fail(f"tables.{name}.{k}", "a passkey table generates its prompts (no dataset); list the base "
                       "model's windows in its row instead")
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row, extra=("steps",))
            _exported(name, i, self.steps(ext, row) if ext else [], ext)
        _unique_rows(name, spec)

    @staticmethod
    def steps(ext: dict, row: dict) -> list[int]:
        """The paper's Table 4 reads fine-tuned checkpoints only (from step 200); CT is read at its final step."""
        if "steps" in row:
            return sorted(row["steps"])
        if METHODS[ext["method"]].control:
            return [ext["steps"]]
        return sorted(s for s in ext["checkpoints"] if s > 0)

    def windows(self, cfg: dict, row: dict, ext: dict | None) -> list[int]:
        return sorted(row["windows"]) if "windows" in row else [own_window(cfg, ext)]

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            if row["method"] == "None":
                models, ext = ["base"], None
            else:
                ext = targets.find_extension(cfg, row["size"], row["method"], row["ctx"], row.get("tag"))
                models = [f"{targets.extension_name(ext)}/step{s}" for s in self.steps(ext, row)]
            out += [(self.task, TASKS[self.task].dataset, row["size"], m, w) for m in models
                    for w in self.windows(cfg, row, ext)]
        return out

    def frame(self, records: list[dict]):
        from . import tables

        return tables.passkey_table(records)

    def note(self, records: list[dict]) -> str:
        p = records[0]["protocol"]
        return (f"Passkey retrieval: k_max, the largest distance k (tokens from the needle to the end of the prompt) "
                f"such that every k' <= k is retrieved in >= {p['threshold']:.0%} of {p['trials']} trials; "
                f"{p['num_k']} k per window, evenly spaced up to 'Largest k' (the window less the prompt's fixed "
                f"parts{', intro included' if p['intro'] else ', without the intro'}); greedy decoding. Window: the "
                "prompt's length plus the answer (past the model's own window it is extrapolation). None = base "
                "model. Fine-tuning data: the extension's mixture (corpus: the training text alone; another name: "
                "the config's finetune_mixtures entry, the text with passkey-format sequences laid out at the "
                "training window).")


@register("passkey_accuracy")
class PasskeyAccuracy(Kind):
    """Passkey retrieval accuracy at each window (the YaRN repository's passkey measure, beyond the paper): per row
    (a model at a step) and window, the fraction of all the window's prompts (every k, every trial) whose answer is
    the key, with its 95% Wilson interval. It reads the records of the passkey task (the jobs Table 4's kind runs,
    one per checkpoint at every window any table asks), so it adds windows to those jobs, never a job of its own
    kind. Rows name the base model (method None, at any windows) or an extension at its steps (default: its final
    one, the model a published cell describes)."""

    task = "passkey"
    fmt = "{:.2f}"
    schema = {"required": ["rows"], "properties": {"rows": _rows(
        {**_MODEL_ROW, "properties": {
            **_MODEL_ROW["properties"],
            "steps": _STEPS,
            "windows": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/posint"},
                        "description": "the windows (prompt + answer) read, one column each (default: the model's "
                                       "own, L for the base model and CT); beyond the model's window it is "
                                       "extrapolation"}}},
        "one row per (model, step): method None is the base model (no ctx), any other an extension (size, method, "
        "ctx[, tag]) at the listed steps (default: its final step)")}}
    # A published cell passes when 0 lies in the 95% Newcombe interval of the difference ours - theirs, each side's
    # binomial uncertainty its own Wilson interval (theirs from its trials: the YaRN repository's eval.sh passes
    # --iterations 50); {"absolute": a}: |ours - theirs| <= a.
    tolerance = {"reference_trials": 50}
    tolerances = ("reference_trials", "absolute")
    findings_read = {}

    def findings(self, name, table, run):
        return []

    def paper_cell(self, cfg, spec, cell, ext):
        model = "base" if ext is None else targets.final_model(ext)
        return (self.task, TASKS[self.task].dataset, cell["size"], model, int(cell["column"]))

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                fail(f"tables.{name}.{k}", "a passkey_accuracy table generates its prompts (no dataset); list the "
                       "windows in its rows instead")
        if "quoted" in spec:
            fail(f"tables.{name}.quoted", "a passkey_accuracy table shows no quoted rows: name the published cells "
                 "in audit.paper, which judges them beside this table")
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row, extra=("steps",))
            _exported(name, i, row.get("steps", []), ext)
        _unique_rows(name, spec)

    def models(self, row: dict, ext: dict | None) -> list[str]:
        if ext is None:
            return ["base"]
        return [f"{targets.extension_name(ext)}/step{s}" for s in sorted(row.get("steps", [ext["steps"]]))]

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = _row_model(cfg, row)
            windows = sorted(row["windows"]) if "windows" in row else [own_window(cfg, ext)]
            out += [(self.task, TASKS[self.task].dataset, row["size"], m, w) for m in self.models(row, ext)
                    for w in windows]
        return out

    def layout(self, cfg: dict, spec: dict) -> dict:
        """The table's own cells: a passkey record holds every window any table asks of its checkpoint."""
        return {"cells": [[c[2], c[3], c[4]] for c in self.cells(cfg, spec)]}

    def frame(self, records: list[dict], cells: list | None = None):
        from . import tables

        return tables.passkey_accuracy_table(records, cells)

    def display(self, frame):
        from . import tables

        return tables.passkey_accuracy_display(frame)

    def note(self, records: list[dict]) -> str:
        p = records[0]["protocol"]
        return (f"Passkey retrieval accuracy: at each window, the fraction of its {p['num_k'] * p['trials']} prompts "
                f"({p['num_k']} distances k evenly spaced up to the window less the prompt's fixed parts, "
                f"{p['trials']} random 5-digit keys each; {'intro included' if p['intro'] else 'without the intro'}) "
                "whose greedy answer's first number is the key, with its 95% Wilson interval [low, high]. Window: "
                "the prompt's length plus the answer (past the model's own window it is extrapolation). None = base "
                "model; Step: the fine-tuning step read. Published cells of the same measure are judged by the "
                "audit's side by side (resources/yarn/README.md).")

    def judge(self, cfg, spec, cell, ext, frame, tol):
        """Ours (x of n prompts at the cell's window, the extension's final step) against the published fraction
        (theirs: of ``tol["reference_trials"]`` trials): PASS when 0 is inside the 95% Newcombe (1998, method 10)
        interval of the difference, whose half-widths combine our Wilson interval's and theirs in quadrature; with
        ``tol["absolute"]``, when |ours - theirs| is at most that."""
        import pandas as pd

        from .passkey import newcombe, wilson

        col, step = str(cell["column"]), (0 if ext is None else ext["steps"])
        row = None
        if frame is not None and col in frame.columns:
            m = (frame["size"].astype(str) == cell["size"]) & (frame["method"].astype(str) == cell["method"]) & \
                (frame["step"] == step) & (frame["model_ctx"] == (cfg["base_window"] if ext is None else ext["ctx"]))
            hits = frame.loc[m]
            row = hits.iloc[0] if len(hits) == 1 and pd.notna(hits.iloc[0][col]) else None
        if row is None:
            return {"ours": None, "diff": None, "status": "missing",
                    "why": f"no cell at window {col}, step {step} in the table"}
        ours, theirs, n = float(row[col]), float(cell["value"]), int(row[f"{col} n"])
        x = round(ours * n)
        ci = (float(row[f"{col} lo"]), float(row[f"{col} hi"]))
        diff = ours - theirs
        if "absolute" in tol:
            ok = abs(diff) <= tol["absolute"]
            why = f"ours {x}/{n}; difference {diff:+.2f} {'within' if ok else 'beyond'} ±{tol['absolute']}"
            return {"ours": ours, "diff": diff, "status": "PASS" if ok else "FAIL", "why": why}
        m_ref = tol["reference_trials"]
        y = theirs * m_ref
        if abs(y - round(y)) > 1e-6:
            return {"ours": ours, "diff": diff, "status": "FAIL",
                    "why": f"the published {cell['value']} is no count of {m_ref} trials: misquoted?"}
        ci_ref = wilson(round(y), m_ref)
        lo, hi = newcombe(ours, ci, theirs, ci_ref)
        ok = lo <= 0 <= hi
        why = (f"ours {x}/{n} [{ci[0]:.2f}, {ci[1]:.2f}], theirs {round(y)}/{m_ref} [{ci_ref[0]:.2f}, {ci_ref[1]:.2f}]"
               f" (Wilson 95%); difference {diff:+.2f}, Newcombe 95% [{lo:+.2f}, {hi:+.2f}] "
               f"{'holds' if ok else 'excludes'} 0")
        return {"ours": ours, "diff": diff, "status": "PASS" if ok else "FAIL", "why": why}


@register("ruler")
class Ruler(Kind):
    """RULER (Hsieh et al. 2024) beyond the paper: per model and task, the score at each prompt length up to the
    model's window, and the model's effective length (pi_repro.ruler). Rows name the base model (method None: at L
    and any longer lengths the row lists, extrapolation) or an extension at its steps (default: its final one)."""

    task = "ruler"
    fmt = "{:.1f}"
    figure = "ruler"
    schema = {"properties": {
        "threshold": {"type": "number", "minimum": 0, "maximum": 100,
                      "description": "the effective length's threshold (mean score, 0-100); default: the base "
                                     "model's own mean at L (a base-model row must read L)"},
        "rows": _rows(
            {**_MODEL_ROW, "properties": {
                **_MODEL_ROW["properties"],
                "steps": _STEPS,
                "lengths": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/posint"},
                            "description": "the lengths read (default: ruler.lengths up to the model's window, L "
                                           "included for the base model); beyond its window it is extrapolation"}}},
            "one row per model: method None is the base model, any other an extension (size, method, ctx[, tag]) "
            "at the listed steps (default: its final step)")},
        "required": ["rows"]}
    tolerance = {"absolute": 5.0}  # score points
    findings_read = {"9": "PI's RULER effective length passes L (ruler tables)"}

    def findings(self, name, table, run):
        from .findings import ruler_findings

        return ruler_findings(name, table["frame"], run.L, self.findings_read)

    def paper_cell(self, cfg, spec, cell, ext):
        return None  # the paper has no RULER; quoted cells of other models are never judged

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        from .ruler import check_tasks

        if "ruler" not in cfg:
            fail(f"tables.{name}", "a ruler table needs the config's ruler block (its lengths)")
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                fail(f"tables.{name}.{k}", "a ruler table generates its prompts (no dataset); list the base model's "
                       "lengths in its row instead")
        for problem in check_tasks(targets.ruler_protocol(cfg)["tasks"]):
            fail("ruler.tasks", problem)
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row, extra=("steps",))
            _exported(name, i, row.get("steps", []), ext)
            if not self.lengths(cfg, row, ext):
                fail(f"tables.{name}.rows[{i}]", f"no length of ruler.lengths {cfg['ruler']['lengths']} is within "
                       f"the model's window {own_window(cfg, ext)}: give the row its lengths")
        if "threshold" not in spec:
            for size in {r["size"] for r in spec["rows"]}:
                if not any(r["size"] == size and r["method"] == "None"
                           and cfg["base_window"] in self.lengths(cfg, r, None) for r in spec["rows"]):
                    fail(f"tables.{name}", f"the effective length's threshold is the base model's mean at L = "
                           f"{cfg['base_window']}: add a row {{size: {size}, method: None}} reading L, or give "
                           "the table a threshold")
        _unique_rows(name, spec)

    @staticmethod
    def lengths(cfg: dict, row: dict, ext: dict | None) -> list[int]:
        if "lengths" in row:
            return sorted(row["lengths"])
        own = own_window(cfg, ext)
        return sorted(x for x in cfg["ruler"]["lengths"] if x <= own)

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = _row_model(cfg, row)
            if ext is None:
                models = ["base"]
            else:
                models = [f"{targets.extension_name(ext)}/step{s}" for s in row.get("steps", [ext["steps"]])]
            out += [(self.task, TASKS[self.task].dataset, row["size"], m, x) for m in models
                    for x in self.lengths(cfg, row, ext)]
        return out

    def layout(self, cfg: dict, spec: dict) -> dict:
        return {"base_window": cfg["base_window"], "threshold": spec.get("threshold")}

    def frame(self, records: list[dict], quoted: list[dict] | None = None, base_window: int = 0,
              threshold: float | None = None):
        from . import tables

        return tables.ruler_table(records, base_window, threshold, quoted)

    def display(self, frame):
        from . import tables

        return tables.ruler_display(frame)

    def note(self, records: list[dict]) -> str:
        p = records[0]["protocol"]
        return (f"RULER (lm-evaluation-harness {records[0]['harness_version']}): score (0-100, the fraction of the "
                f"targets found in the greedy output) of {p['samples']} prompts per task at each prompt length "
                f"(tokens; the answer may take up to {p['answer_room']} more), and their mean over the tasks "
                f"({', '.join(p['tasks'])}). Effective length: the largest length whose mean, and that of every "
                "shorter length, is at or above the threshold (the table's, else the base model's mean at L; '-': "
                "none, or 0). Past the model's own window it is extrapolation. None = base model. Quoted rows "
                "(step '-') are another model's published means, shown, never judged.")


@register("benchmarks")
class Benchmarks(Kind):
    """Zero-shot multiple-choice accuracy at the original window (the paper's Table 5): one row per model (the base
    model, or an extension at its final step), one column per task of the config's ``benchmarks`` block."""

    task = "bench"
    fmt = "{:.1f}"
    schema = {"required": ["rows"], "properties": {"rows": _rows(
        _MODEL_ROW, "one model per row at its final step: the base model (method None) or an extension")}}
    tolerance = {"absolute": 2.0}  # accuracy points
    findings_read = {"5": "PI keeps its quality at the original window (benchmarks tables)"}

    def findings(self, name, table, run):
        from .findings import benchmarks_findings

        return benchmarks_findings(name, table["frame"], self.findings_read)

    def paper_cell(self, cfg, spec, cell, ext):
        model = "base" if ext is None else targets.final_model(ext)
        return (self.task, TASKS[self.task].dataset, cell["size"], model, targets.benchmark_window(cfg), cell["column"])

    def paper_columns(self, cfg):
        return [t.get("label", n) for n, t in cfg["benchmarks"]["tasks"].items()]

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        if "benchmarks" not in cfg:
            fail(f"tables.{name}", "a benchmarks table needs the config's benchmarks block (its tasks)")
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                fail(f"tables.{name}.{k}", "a benchmarks table reads the tasks of the benchmarks block")
        for i, row in enumerate(spec["rows"]):
            _row_extension(cfg, name, i, row)
        _unique_rows(name, spec)

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        window = targets.benchmark_window(cfg)
        out = []
        for row in spec["rows"]:
            ext = _row_model(cfg, row)
            model = "base" if ext is None else targets.final_model(ext)
            out.append((self.task, TASKS[self.task].dataset, row["size"], model, window))
        return out

    def layout(self, cfg: dict, spec: dict) -> dict:
        """What the table job lays out beside the records (rule table's param): the tasks in the config's order."""
        return {"task_order": list(cfg["benchmarks"]["tasks"])}

    def frame(self, records: list[dict], task_order: list[str] | None = None):
        from . import tables

        return tables.benchmarks_table(records, task_order)

    def display(self, frame):
        from . import tables

        return tables.benchmarks_display(frame)

    def note(self, records: list[dict]) -> str:
        r = records[0]
        return (f"Zero-shot accuracy (%, lm-evaluation-harness {r['harness_version']}: log-likelihood of each "
                f"option, acc ± its standard error) at the original window ({r['window']} tokens: inputs are "
                "limited to it, extended models keep their position scaling). Fine-tune on: the data of the "
                "extension's fine-tuning; None = base model.")


@register("summarization")
class Summarization(Kind):
    """Long-document summarization (the paper's Table 6): one row per model, each fine-tuned to summarize the
    dataset's train split at its own window (the base model and CT at L with the document cut to fit, an
    extension at L' with more of it), scored by ROUGE-1/2/L on the test split; the LEAD baseline's row; the rows
    the paper quotes (``quoted``: other works and the paper's own, marked as quoted, not computed)."""

    task = "rouge"
    fmt = "{:.1f}"
    schema = {"required": ["dataset", "rows"], "properties": {"rows": _rows(
        _MODEL_ROW, "one model per row, fine-tuned to summarize at its own window: the base model (method None, at "
        "L) or an extension at its final step (CT: at L)")}}
    tolerance = {"absolute": 1.5}  # ROUGE points
    findings_read = {"7": "the extended model summarizes at least as well as the base model at L (summarization "
                          "tables)"}

    def findings(self, name, table, run):
        from .findings import summarization_findings

        return summarization_findings(name, table["frame"], self.findings_read)

    def paper_cell(self, cfg, spec, cell, ext):
        model = "base" if ext is None else targets.final_model(ext)
        return (self.task, spec["dataset"], cell["size"], model, own_window(cfg, ext), cell["column"])

    def paper_columns(self, cfg):
        from .summarization import ROUGE_LABELS

        return list(ROUGE_LABELS.values())

    def preflight(self, cfg, spec, counts):
        """The summarization protocol's documents per split, against the dataset's."""
        from .summarization import protocol

        if spec["dataset"] not in counts:
            return []
        out, p = [], protocol(cfg)
        for split in ("train", "test"):
            want, have = p.get(f"{split}_docs"), counts[spec["dataset"]].get(split, 0)
            if want and want > have:
                out.append(f"summarization.{split}_docs: {want} asked, the {split} split of {spec['dataset']} "
                           f"({cfg['datasets'][spec['dataset']]['path']}) has {have}")
        return out

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        ds = spec["dataset"]
        if ds not in cfg["datasets"]:
            fail(f"tables.{name}.dataset", f"unknown dataset {ds!r}")
        splits = cfg["datasets"][ds].get("hub", {}).get("splits", {"train": None, "test": None})
        for split in ("train", "test"):
            if split not in splits:
                fail(f"tables.{name}.dataset", f"dataset {ds!r} has no {split} split (summarization fine-tunes on "
                       "train and scores on test)")
        if "extrapolate_to" in spec:
            fail(f"tables.{name}.extrapolate_to", "a summarization table evaluates each model at its own window")
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row)
            hp = summarization.hparams(cfg, row["size"], "base" if ext is None else targets.final_model(ext))
            ranks = sizing.train_ranks(cfg, ext or {"size": row["size"]})
            if hp["global_batch"] % (hp["micro_batch"] * ranks):
                fail(f"tables.{name}.rows[{i}]", f"summarization: global batch {hp['global_batch']} is not a "
                       f"multiple of micro batch {hp['micro_batch']} x {ranks} ranks")
        _unique_rows(name, spec)
        if spec.get("quoted") and not (ROOT / spec["quoted"]).is_file():
            fail(f"tables.{name}.quoted", f"{spec['quoted']}: no such file (the paper's cells)")

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = _row_model(cfg, row)
            model = "base" if ext is None else targets.final_model(ext)
            out.append((self.task, spec["dataset"], row["size"], model, own_window(cfg, ext)))
        return out

    def extra_records(self, cfg: dict, spec: dict, run_dir: str) -> list[str]:
        """The LEAD baseline's record (rule rouge_lead), unless the entry says ``lead: false``."""
        return [targets.lead_path(run_dir, spec["dataset"])] if spec.get("lead", True) else []

    def frame(self, records: list[dict], quoted: list[dict] | None = None):
        from . import tables

        return tables.summarization_table(records, quoted)

    def display(self, frame):
        from . import tables

        return tables.summarization_display(frame)

    def note(self, records: list[dict]) -> str:
        r = next(r for r in records if r.get("method") != "LEAD")
        g = r["generate"]
        return (f"ROUGE-1/2/L F1 (points, rouge-score with stemming, mean over the {r['n_docs']} test documents of "
                f"{_datasets(records)}) of summaries sampled at temperature {g['temperature']}, top-p {g['top_p']}, "
                f"at most {g['max_new_tokens']} tokens, seeded, after each model was fine-tuned to summarize at its "
                "own window (Window: the base model and CT at L, the document cut to fit; an extension at L'). "
                "'vs None': the paired difference from the base model's row of the same size over the same "
                "documents, with its 95% bootstrap interval. LEAD: the first sentence (of the lead section). "
                "Quoted rows are the paper's numbers, not computed here.")


def _step_cell(task: str, dataset: str, cell: dict, ext: dict | None) -> tuple | None:
    """A published cell read at a fine-tuning step (its column) of the extension, at the model's window."""
    return None if ext is None else (task, dataset, cell["size"], f"{targets.extension_name(ext)}/step{cell['column']}",
                                     cell["model_ctx"])


def check_findings(tables: dict, L: int, hub_sizes=(), theory: dict | None = None, untrained=()) -> list[dict]:
    """Every finding on a run's tables: ``tables`` maps a table's name to {"kind", "dataset", "frame"}. Each kind
    checks its findings on each of its tables, and prints them n/a, with the reason, when the config has none;
    finding 6 reads Figure 2's numbers (``theory``)."""
    from . import findings as F

    run = SimpleNamespace(tables=tables, L=L, hub_sizes=set(hub_sizes), untrained=set(untrained))
    out = []
    for kind_name, kind in KINDS.items():
        mine = [(n, t) for n, t in tables.items() if t["kind"] == kind_name]
        if not mine:
            out += [F.result(f, "-", read, None, {}, reason=f"the config has no table of kind {kind_name}")
                    for f, read in kind.findings_read.items()]
        for name, t in mine:
            out += kind.findings(name, t, run)
    out += F.theory_findings(theory) if theory else [F.result("6", "-", "theory (Figure 2)", None, {},
                                                              reason="no Figure 2 numbers given")]
    return out


def own_window(cfg: dict, ext: dict | None) -> int:
    """A model's own window: L for the base model (``ext`` None) and CT, L' for an extension."""
    return cfg["base_window"] if ext is None else METHODS[ext["method"]].train_window(cfg["base_window"], ext["ctx"])


def _row_model(cfg: dict, row: dict) -> dict | None:
    """The extension a (validated) ``rows`` entry names, None for the base model (method None)."""
    if row["method"] == "None":
        return None
    return targets.find_extension(cfg, row["size"], row["method"], row["ctx"], row.get("tag"))


def _row_extension(cfg: dict, name: str, i: int, row: dict, extra: tuple = ()) -> dict | None:
    """The extension a ``rows`` entry names (None for the base model, method None), checked."""
    key = f"tables.{name}.rows[{i}]"
    if row["size"] not in cfg["sizes"]:
        fail(f"{key}.size", f"unknown size {row['size']!r}")
    if row["method"] == "None":
        for k in ("ctx", "tag") + extra:
            if k in row:
                fail(f"{key}.{k}", "the base model (method None) has no " + k)
        return None
    if "ctx" not in row:
        fail(key, f"an extension row needs ctx (method {row['method']})")
    ext = targets.find_extension(cfg, row["size"], row["method"], row["ctx"], row.get("tag"))
    if ext is None:
        fail(key, f"no extension {row} in extensions")
    return ext


def _exported(name: str, i: int, steps: list[int], ext: dict | None) -> None:
    """Every step a row reads must be one its extension exports."""
    for s in steps:
        if s not in ext["checkpoints"]:
            fail(f"tables.{name}.rows[{i}].steps", f"step {s} is not one of the extension's checkpoints "
                   f"{ext['checkpoints']}")


def _unique_rows(name: str, spec: dict) -> None:
    seen = set()
    for i, row in enumerate(spec["rows"]):
        ident = tuple(row.get(k) for k in ("size", "method", "ctx", "tag"))
        if ident in seen:
            fail(f"tables.{name}.rows[{i}]", "the same model twice (give each model one row)")
        seen.add(ident)


def _check_dataset(cfg: dict, name: str, spec: dict) -> None:
    ds = spec["dataset"]
    if ds not in cfg["datasets"]:
        fail(f"tables.{name}.dataset", f"unknown dataset {ds!r}")
    if "eval" not in cfg["datasets"][ds]:
        fail(f"datasets.{ds}", f"{name} evaluates on it, so it needs an eval block")


def _ppl_protocol(records: list[dict]) -> str:
    """The perplexity protocol the records were made with, as a caption names it (a record without ``protocol``:
    the sliding window, pi_repro.perplexity)."""
    protocols = {r.get("protocol", "sliding") for r in records}
    if len(protocols) > 1:
        raise ValueError(f"the records mix perplexity protocols {sorted(protocols)}: one table, one protocol")
    return protocols.pop()


def _ppl_how(records: list[dict]) -> str:
    if _ppl_protocol(records) == "truncated":
        return "(truncated protocol: one window of each document's first W tokens, YaRN's)"
    return f"(stride {records[0]['stride']})"


def _datasets(records: list[dict]) -> str:
    return ", ".join(sorted({r["dataset"] for r in records}))


def model_windows(cfg: dict) -> list[int]:
    """Largest perplexity window of each model: its ctx, or (base models) the largest a perplexity table asks of
    them (passkey prompts are generated at any length and need no documents that long)."""
    out = [ext["ctx"] for ext in cfg["extensions"]]
    from .tasks import TASKS

    out += [c[4] for t in cfg["tables"] for c in table_cells(cfg, t) if TASKS[c[0]].documents and c[3] == "base"]
    return out or [cfg["base_window"]]


def kind(spec: dict):
    """The table kind (pi_repro.kinds) of a `tables:` entry."""
    return KINDS[spec["kind"]]


def table_cells(cfg: dict, name: str) -> list[tuple]:
    """Every cell (task, dataset, size, model, window) of table ``name``."""
    spec = cfg["tables"][name]
    return kind(spec).cells(cfg, spec)


def table_records(cfg: dict, name: str) -> list[tuple]:
    """The evaluation records (task, dataset, size, model) table ``name`` reads: one per checkpoint, each holding
    all the windows of that checkpoint."""
    return list(dict.fromkeys(c[:4] for c in table_cells(cfg, name)))


def eval_windows(cfg: dict, task: str, dataset: str, size: str, model: str) -> list[int]:
    """Every window at which any table needs ``model`` evaluated by ``task`` on ``dataset`` (one job evaluates
    them all: loading a model once per window would cost more than the evaluation itself on small models)."""
    need = {c[4] for t in cfg["tables"] for c in table_cells(cfg, t) if c[:4] == (task, dataset, size, model)}
    return sorted(need)
