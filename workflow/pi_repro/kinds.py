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
    fmt = "{:.2f}"  # how the Markdown and LaTeX show a cell

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
            models += [(C.final_model(e), e["ctx"]) for e in cfg["extensions"]
                       if e["size"] == size and not e.get("tag")]
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
    fmt = "{:.2f}"  # how the Markdown and LaTeX show a cell

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


class Passkey:
    """The effective context window k_max of passkey retrieval (the paper's Table 4): one row per (model, window k
    spans), one column per fine-tuning step. Rows name the base model (method None, at any windows: past L it is
    extrapolation) or an extension at its exported steps."""

    task = "passkey"
    fmt = "{:.0f}"
    dataset = "synthetic"  # the prompts are generated (pi_repro.passkey), not read from a dataset

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                C.fail(f"tables.{name}.{k}", "a passkey table generates its prompts (no dataset); list the base "
                       "model's windows in its row instead")
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row, extra=("steps",))
            for s in self.steps(ext, row) if ext else []:
                if s not in ext["checkpoints"]:
                    C.fail(f"tables.{name}.rows[{i}].steps", f"step {s} is not one of the extension's checkpoints "
                           f"{ext['checkpoints']}")
        _unique_rows(name, spec)

    @staticmethod
    def steps(ext: dict, row: dict) -> list[int]:
        """The paper's Table 4 reads fine-tuned checkpoints only (from step 200); CT is read at its final step."""
        if "steps" in row:
            return sorted(row["steps"])
        if ext["method"] == "CT":
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
                ext = C.find_extension(cfg, row["size"], row["method"], row["ctx"], row.get("tag"))
                models = [f"{C.extension_name(ext)}/step{s}" for s in self.steps(ext, row)]
            out += [(self.task, self.dataset, row["size"], m, w) for m in models for w in self.windows(cfg, row, ext)]
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


class Benchmarks:
    """Zero-shot multiple-choice accuracy at the original window (the paper's Table 5): one row per model (the base
    model, or an extension at its final step), one column per task of the config's ``benchmarks`` block."""

    task = "bench"
    dataset = "zeroshot"  # the tasks are the config's `benchmarks.tasks`, scored by lm-evaluation-harness
    fmt = "{:.1f}"

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        if "benchmarks" not in cfg:
            C.fail(f"tables.{name}", "a benchmarks table needs the config's benchmarks block (its tasks)")
        for k in ("dataset", "extrapolate_to"):
            if k in spec:
                C.fail(f"tables.{name}.{k}", "a benchmarks table reads the tasks of the benchmarks block")
        for i, row in enumerate(spec["rows"]):
            _row_extension(cfg, name, i, row)
        _unique_rows(name, spec)

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        window = C.benchmark_window(cfg)
        out = []
        for row in spec["rows"]:
            ext = None if row["method"] == "None" else C.find_extension(cfg, row["size"], row["method"], row["ctx"],
                                                                         row.get("tag"))
            out.append((self.task, self.dataset, row["size"], "base" if ext is None else C.final_model(ext), window))
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


class Summarization:
    """Long-document summarization (the paper's Table 6): one row per model, each fine-tuned to summarize the
    dataset's train split at its own window (the base model and CT at L with the document cut to fit, an
    extension at L' with more of it), scored by ROUGE-1/2/L on the test split; the LEAD baseline's row; the rows
    the paper quotes (``quoted``: other works and the paper's own, marked as quoted, not computed)."""

    task = "rouge"
    fmt = "{:.1f}"

    def validate(self, cfg: dict, name: str, spec: dict) -> None:
        ds = spec["dataset"]
        if ds not in cfg["datasets"]:
            C.fail(f"tables.{name}.dataset", f"unknown dataset {ds!r}")
        splits = cfg["datasets"][ds].get("hub", {}).get("splits", {"train": None, "test": None})
        for split in ("train", "test"):
            if split not in splits:
                C.fail(f"tables.{name}.dataset", f"dataset {ds!r} has no {split} split (summarization fine-tunes on "
                       "train and scores on test)")
        if "extrapolate_to" in spec:
            C.fail(f"tables.{name}.extrapolate_to", "a summarization table evaluates each model at its own window")
        for i, row in enumerate(spec["rows"]):
            ext = _row_extension(cfg, name, i, row)
            hp = C.summarization_hparams(cfg, row["size"], "base" if ext is None else C.final_model(ext))
            ranks = C.train_ranks(cfg, ext or {"size": row["size"]})
            if hp["global_batch"] % (hp["micro_batch"] * ranks):
                C.fail(f"tables.{name}.rows[{i}]", f"summarization: global batch {hp['global_batch']} is not a "
                       f"multiple of micro batch {hp['micro_batch']} x {ranks} ranks")
        _unique_rows(name, spec)
        if spec.get("quoted") and not (C.ROOT / spec["quoted"]).is_file():
            C.fail(f"tables.{name}.quoted", f"{spec['quoted']}: no such file (the paper's cells)")

    def cells(self, cfg: dict, spec: dict) -> list[tuple]:
        out = []
        for row in spec["rows"]:
            ext = None if row["method"] == "None" else C.find_extension(cfg, row["size"], row["method"], row["ctx"],
                                                                         row.get("tag"))
            model = "base" if ext is None else C.final_model(ext)
            out.append((self.task, spec["dataset"], row["size"], model, own_window(cfg, ext)))
        return out

    def extra_records(self, cfg: dict, spec: dict, run_dir: str) -> list[str]:
        """The LEAD baseline's record (rule rouge_lead), unless the entry says ``lead: false``."""
        return [C.lead_path(run_dir, spec["dataset"])] if spec.get("lead", True) else []

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


KINDS = {"windows": Windows(), "steps": Steps(), "passkey": Passkey(), "benchmarks": Benchmarks(),
         "summarization": Summarization()}


def own_window(cfg: dict, ext: dict | None) -> int:
    """A model's own window: L for the base model (``ext`` None) and CT, L' for an extension."""
    return cfg["base_window"] if ext is None or ext["method"] == "CT" else ext["ctx"]


def _row_extension(cfg: dict, name: str, i: int, row: dict, extra: tuple = ()) -> dict | None:
    """The extension a ``rows`` entry names (None for the base model, method None), checked."""
    key = f"tables.{name}.rows[{i}]"
    if row["size"] not in cfg["sizes"]:
        C.fail(f"{key}.size", f"unknown size {row['size']!r}")
    if row["method"] == "None":
        for k in ("ctx", "tag") + extra:
            if k in row:
                C.fail(f"{key}.{k}", "the base model (method None) has no " + k)
        return None
    if "ctx" not in row:
        C.fail(key, f"an extension row needs ctx (method {row['method']})")
    ext = C.find_extension(cfg, row["size"], row["method"], row["ctx"], row.get("tag"))
    if ext is None:
        C.fail(key, f"no extension {row} in extensions")
    return ext


def _unique_rows(name: str, spec: dict) -> None:
    seen = set()
    for i, row in enumerate(spec["rows"]):
        ident = tuple(row.get(k) for k in ("size", "method", "ctx", "tag"))
        if ident in seen:
            C.fail(f"tables.{name}.rows[{i}]", "the same model twice (give each model one row)")
        seen.add(ident)


def _check_dataset(cfg: dict, name: str, spec: dict) -> None:
    ds = spec["dataset"]
    if ds not in cfg["datasets"]:
        C.fail(f"tables.{name}.dataset", f"unknown dataset {ds!r}")
    if "eval" not in cfg["datasets"][ds]:
        C.fail(f"datasets.{ds}", f"{name} evaluates on it, so it needs an eval block")


def _datasets(records: list[dict]) -> str:
    return ", ".join(sorted({r["dataset"] for r in records}))
