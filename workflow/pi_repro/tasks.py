"""Evaluation tasks: what one evaluation job of a checkpoint runs. A table kind (pi_repro.kinds) names its task; the
task says which rule runs its jobs, which rules of it ask GPUs (the audit re-executes them there), which batch
setting sizes its memory, and how the cost plan (pi_repro.cost) and the memory estimate (pi_repro.memory) price
one job. Read while the DAG is built: this module imports only pi_repro.registry; what a task's methods compute
with is handed to them (``x``: the targets, cost, memory, perf and summarization modules; see cost.toolbox), so
the registry sits below every module that dispatches to it.

A job is ``(task, dataset, size, model)`` with the set of windows the tables read of it (``cost.eval_jobs``).
Register a new task with ``@register``: a task that leaves out one of ``Task.REQUIRED`` is refused at import.
"""
from __future__ import annotations

from .registry import registrar

TASKS: dict[str, Task] = {}
MODEL_GPU_RULES = ("base_model", "init_extension", "finetune")  # the models' GPU rules: sealing, fine-tuning


class Task:
    """An evaluation task. Subclasses set every name of ``REQUIRED`` (None where it does not apply)."""

    REQUIRED = ("rule", "gpu_rules", "batch_key", "dataset", "documents", "plan", "peak")
    name: str
    rule: str  # the rule whose job evaluates one checkpoint (its records: eval/{task}/...)
    gpu_rules: tuple[str, ...]  # this task's rules that ask GPUs
    batch_key: str  # the config key of its batch size (named when a job does not fit a GPU)
    dataset: str | None  # the dataset every job reads (passkey prompts are generated: "synthetic"), or None
    documents: bool  # whether it reads a dataset's evaluation documents (they must be tokenized at its windows)
    sharded: str | None = None  # the config block whose ``shards`` / ``shard_hours`` split a long job (None: never)
    # whether its long jobs resume: cost.check_time leaves them to their shards, which keep their finished work when
    # resubmitted and are sized within the runtime by ``<block>.shard_hours`` (validated)
    resumable: bool = False
    train_rule: str | None = None  # a training job each evaluated model needs first (summarization's fine-tune)

    def plan(self, cfg: dict, job: tuple, windows: list[int], add, x) -> None:
        """Add the cost plan's rows of one job (``add(rule, what, flops, mfu, missing=None, peak=None, train=False)``,
        see cost.plan)."""
        raise NotImplementedError

    def peak(self, cfg: dict, sh, window: int, kw: dict, x) -> dict | None:
        """The memory estimate of one job of a model of shape ``sh`` (memory.Shape) up to ``window``:
        memory.forward_peak with ``kw`` (dtype, GPUs)."""
        raise NotImplementedError

    def flops(self, cfg: dict, job: tuple, windows: list[int], x) -> float | None:
        """A sharded task's FLOPs for one job (what ``shard_hours`` sizes its shards by; None: no estimate)."""
        raise NotImplementedError

    def max_shards(self, cfg: dict, job: tuple, x) -> int | None:
        """A sharded task's most shards for one job: each must hold some work (None: no bound known)."""
        raise NotImplementedError

    def plan_shards(self, cfg, job, windows, add, x, what: str) -> None:
        """The cost plan's rows of a sharded task's job: one per shard, each 1/n of the FLOPs."""
        flops = self.flops(cfg, job, windows, x)
        n = x.cost.eval_shards(cfg, {job: {"windows": set(windows)}})[job]
        for k in range(n):
            add(f"{self.rule}_shard" if n > 1 else self.rule, what + (f", shard {k + 1}/{n}" if n > 1 else ""),
                None if flops is None else flops / n, "eval_mfu",
                None if flops is not None else f"cost.datasets.{job[1]}.eval_tokens not given")


# Class decorator: add a task to TASKS; refuse one that does not define all of ``Task.REQUIRED`` or takes a name
# twice.
register = registrar(TASKS, Task, "evaluation task", "pi_repro.tasks.Task")


def gpu_rules() -> tuple[str, ...]:
    """Every rule that can ask GPUs: the audit runs its re-executions of them on a GPU node."""
    return MODEL_GPU_RULES + tuple(r for t in TASKS.values() for r in t.gpu_rules)


@register("ppl")
class Perplexity(Task):
    """Sliding-window perplexity of a dataset's evaluation documents (the paper's Tables 1-3); sharded when long."""

    rule, gpu_rules, batch_key = "perplexity", ("perplexity", "perplexity_shard"), "perplexity.batch_size"
    dataset, documents, sharded = None, True, "perplexity"
    resumable = True  # a shard journals its finished documents (pi_repro.perplexity.Progress)

    def plan(self, cfg, job, windows, add, x):
        _, ds, size, model = job  # a sharded evaluation: one job per shard, each about 1/n of the tokens
        self.plan_shards(cfg, job, windows, add, x, f"{size} {model} on {ds} at {', '.join(map(str, windows))}")

    def flops(self, cfg, job, windows, x):
        return x.cost.perplexity_flops(cfg, job[1], job[2], windows)

    def max_shards(self, cfg, job, x):  # a shard holds whole documents
        return (cfg["datasets"][job[1]].get("eval") or {}).get("num_docs") or \
            x.cost.settings(cfg)["datasets"].get(job[1], {}).get("eval_docs")

    def peak(self, cfg, sh, w, kw, x):
        return x.memory.forward_peak(sh, cfg["perplexity"].get("batch_size", 8), w,
                                     scored=min(x.memory.HEAD_CHUNK, w), **kw)


@register("passkey")
class PasskeyRetrieval(Task):
    """Passkey retrieval at each window (the paper's Table 4): generated prompts, greedy decoding."""

    rule, gpu_rules, batch_key = "passkey", ("passkey",), "passkey.batch_size"
    dataset, documents = "synthetic", False  # the prompts are generated (pi_repro.passkey), not read

    def plan(self, cfg, job, windows, add, x):
        pk, sh = x.targets.passkey_protocol(cfg), x.targets.shape(cfg, job[2])
        add("passkey", f"{job[2]} {job[3]} at {', '.join(map(str, windows))}",
            sum(pk["num_k"] * pk["trials"] * w * x.perf.flops_per_token(sh, w, False) for w in windows), "eval_mfu")

    def peak(self, cfg, sh, w, kw, x):
        return x.memory.forward_peak(sh, x.targets.passkey_protocol(cfg)["batch_size"], w, kv_cache=w + 8, **kw)


@register("ruler")
class Ruler(Task):
    """RULER's synthetic tasks through lm-evaluation-harness at each length (pi_repro.ruler): generated prompts,
    greedy decoding; one job per checkpoint reads every length the tables need of it, or (``ruler.shards`` /
    ``shard_hours``) each shard a share of every task's prompts at every length."""

    rule, gpu_rules, batch_key = "ruler", ("ruler", "ruler_shard"), "ruler.batch_size"
    dataset, documents, sharded = "synthetic", False, "ruler"  # the prompts are generated by the harness, not read

    def plan(self, cfg, job, windows, add, x):
        self.plan_shards(cfg, job, windows, add, x, f"{job[2]} {job[3]} at {', '.join(map(str, windows))}")

    def flops(self, cfg, job, windows, x):  # a generated token costs a forward token
        p, sh, answer = x.targets.ruler_protocol(cfg), x.targets.shape(cfg, job[2]), x.targets.RULER_ANSWER
        return sum(len(p["tasks"]) * p["samples"] * (w + answer) * x.perf.flops_per_token(sh, w + answer, False)
                   for w in windows)

    def max_shards(self, cfg, job, x):  # a shard holds at least one prompt of each task and length
        return x.targets.ruler_protocol(cfg)["samples"]

    def peak(self, cfg, sh, w, kw, x):
        n = w + x.targets.RULER_ANSWER
        return x.memory.forward_peak(sh, x.targets.ruler_protocol(cfg)["batch_size"], n, kv_cache=n, **kw)


@register("bench")
class ZeroShot(Task):
    """Zero-shot multiple choice through lm-evaluation-harness at the original window (the paper's Table 5)."""

    rule, gpu_rules, batch_key = "benchmark", ("benchmark",), "benchmarks.batch_size"
    dataset, documents = "zeroshot", False  # the tasks are the config's `benchmarks.tasks`

    def plan(self, cfg, job, windows, add, x):
        add("benchmark", f"{job[2]} {job[3]}", x.cost.settings(cfg)["benchmark_tokens"]
            * x.perf.flops_per_token(x.targets.shape(cfg, job[2]), windows[-1], False), "eval_mfu")

    def peak(self, cfg, sh, w, kw, x):
        return x.memory.forward_peak(sh, cfg.get("benchmarks", {}).get("batch_size", 8), w, full_logits=True, **kw)


@register("rouge")
class Summaries(Task):
    """Summaries of a dataset's test documents by a model first fine-tuned to summarize at its own window (the
    paper's Table 6), scored by ROUGE: two GPU jobs per model, the fine-tune and the generation."""

    rule, gpu_rules, batch_key = "summarize", ("summarize_finetune", "summarize"), \
        "summarization.generate.batch_size"
    dataset, documents, train_rule = None, False, "summarize_finetune"

    def plan(self, cfg, job, windows, add, x):
        _, ds, size, model = job
        s, spec, sh = x.cost.settings(cfg), x.summarization.protocol(cfg), x.targets.shape(cfg, size)
        w, docs = windows[-1], s["datasets"].get(ds, {})
        hp = x.summarization.hparams(cfg, size, model)
        train = spec.get("train_docs") or docs.get("train_docs")
        test = spec.get("test_docs") or docs.get("test_docs")
        add("summarize_finetune", f"{size} {model} on {ds}",
            None if not train else x.cost.train_flops(hp, spec["epochs"] * train * w, sh, w), "mfu",
            None if train else f"cost.datasets.{ds}.train_docs not given",
            peak=x.cost.summarize_train_estimate(cfg, size, model, w), train=True)
        add("summarize", f"{size} {model} on {ds}",
            None if not test else test * (w + spec["generate"]["max_new_tokens"])
            * x.perf.flops_per_token(sh, w, False),
            "eval_mfu", None if test else f"cost.datasets.{ds}.test_docs not given")

    def peak(self, cfg, sh, w, kw, x):
        g = x.summarization.protocol(cfg)["generate"]
        return x.memory.forward_peak(sh, g["batch_size"], w, kv_cache=w + g["max_new_tokens"], padded=True, **kw)
