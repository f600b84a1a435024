"""RULER (Hsieh et al. 2024, "What's the real context size of your long-context language models?") through
lm-evaluation-harness's ``ruler`` tasks, offline, on a checkpoint the pipeline loaded and verified.

The harness builds each task's prompts for a list of lengths (``max_seq_lengths``), sized with the model's own
tokenizer (handed to it as the checkpoint's folder), 500 per task and length; a job scores the first ``n`` of each
length with greedy decoding and the harness's metric (``string_match_all``: the fraction of the targets found in
the output, case-insensitive). Lengths are prompt lengths: the model's input is up to the length plus the task's
answer (at most ``RULER_ANSWER``), so no prompt is cut.

RULER's synthetic tasks (``SYNTHETIC``, the default) generate their haystacks (repeated sentences, random keys and
values, word lists). The others (``DOWNLOADED``) read data the harness would download at load time: Paul Graham's
essays with NLTK's sentence splitter, SQuAD and HotpotQA. The pipeline fetches those once, pinned (``SOURCES``:
rule ruler_data, part of `snakemake downloads`), and hands them to the harness from disk (``harness_reads``), so
an evaluation job reads nothing from the network.

Guards against the harness's failure modes at short lengths, found on this machine: variable tracking retries
forever when its in-context example leaves no room (``timeout``), common-words emits items with no target, and
frequent-words fills the prompt to the length without room for the answer (hence ``RULER_ANSWER`` of room).
"""
from __future__ import annotations

import os
import random
import re
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .targets import RULER_ANSWER, RULER_TASKS

SYNTHETIC = tuple(RULER_TASKS)  # RULER's synthetic tasks: nothing to download (the default of ``ruler.tasks``)
WHAT = dict(zip(RULER_TASKS, (  # what each synthetic task asks
    "needle in a haystack: one key, number value, repeated-sentence haystack (~passkey)",
    "needle in a haystack: one of many keys, the haystack made of other needles",
    "needle in a haystack: one of many UUID keys, UUID values, haystack of needles",
    "variable tracking: every variable a chain of assignments binds to a value (multi-hop)",
    "common words extraction: the 10 most common words of a long list (aggregation)",
    "frequent words extraction: the 3 most frequent coded words (aggregation)",
), strict=True))
ESSAY_TASKS = ("niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multiquery", "niah_multivalue")
NEEDS = {**{t: ("essays", "punkt_tab") for t in ESSAY_TASKS},  # RULER's tasks whose data the harness downloads
         "ruler_qa_squad": ("squad",), "ruler_qa_hotpot": ("hotpotqa",)}
DOWNLOADED = tuple(NEEDS)
ESSAYS_ID = "baber/paul_graham_essays"  # the hub dataset the harness loads for the essay haystack
ESSAYS_REVISION = "792d672b77d1a67720f7e9820d646358fc18792e"
# What those tasks download at load time in lm-evaluation-harness 0.4.13, pinned: each is fetched once by rule
# ruler_data (`snakemake downloads`, where there is internet), checked against its sha256, and handed to the
# harness from disk (``harness_reads``). The sha256 values are those an independent pinned-data manifest recorded
# for the same URLs (not downloaded here: this machine has no internet); HotpotQA's URL is the harness's own,
# an immutable hub revision, and its sha256 is recorded at the first fetch.
SOURCES = {
    "essays": {"file": "essays.parquet", "sha256": "825448033be010042ffd6fc77c32bbcab61f2ef63196f0fc4bfbf5b388a1660e",
               "url": f"https://huggingface.co/datasets/{ESSAYS_ID}/resolve/{ESSAYS_REVISION}/essays.parquet",
               "what": f"Paul Graham's essays (hub {ESSAYS_ID} at {ESSAYS_REVISION[:10]}): the essay haystack"},
    "punkt_tab": {"file": "punkt_tab.zip", "sha256": "e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106",
                  "url": "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/tokenizers/punkt_tab.zip",
                  "what": "NLTK's punkt_tab sentence splitter: the essay haystack is cut into sentences with it"},
    "squad": {"file": "squad.json", "sha256": "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8",
              "url": "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json",
              "what": "SQuAD 2.0's development set (ruler_qa_squad's questions and documents)"},
    "hotpotqa": {"file": "hotpotqa.json", "sha256": None,
                 "url": "https://huggingface.co/datasets/namlh2004/hotpotqa/resolve/"
                        "7e54db4656209750ff487f6fdf8e39a66dba136b/hotpot_dev_distractor_v1.json",
                 "what": "HotpotQA's distractor development set (ruler_qa_hotpot's questions and documents)"},
}


def sources(tasks: list[str], overrides: dict | None = None) -> dict[str, dict]:
    """The pinned downloads ``tasks`` need (name -> file, url, sha256, what), with the config's ``ruler.sources``
    (url, sha256 of a source: a mirror) over the defaults."""
    names = dict.fromkeys(n for t in tasks for n in NEEDS.get(t, ()))
    return {n: {**SOURCES[n], **(overrides or {}).get(n, {})} for n in names}


def fetch(spec: dict, out: str | Path, timeout: int = 600) -> dict:
    """Download one source to ``out`` (written whole or not at all) and check its sha256: what was fetched."""
    import requests

    from .io import atomic_path, verify_sha256

    with atomic_path(out) as tmp:
        try:
            with requests.get(spec["url"], stream=True, timeout=(30, timeout)) as r:
                r.raise_for_status()
                with open(tmp, "wb") as f:
                    for block in r.iter_content(1 << 20):
                        f.write(block)
        except requests.RequestException as e:
            raise RuntimeError(f"could not download {spec['url']} ({spec['what']}): {e}") from None
        digest = verify_sha256(tmp, spec.get("sha256"))
        size = tmp.stat().st_size
    return {"url": spec["url"], "sha256": digest, "bytes": size, "pinned": bool(spec.get("sha256"))}


@contextmanager
def harness_reads(data: str | Path | None, tasks: list[str], overrides: dict | None = None):
    """While the harness builds ``tasks``, what it would download comes from the fetched copies in ``data``: the
    essay dataset (``datasets.load_dataset`` of ESSAYS_ID), the QA sets (``requests.get`` of their URLs) and NLTK's
    punkt_tab (on NLTK's path). Any other download through those calls is refused by name, so nothing is fetched
    behind the pipeline's back; each file's sha256 is checked against its pin first. Yields what was read (name ->
    url, sha256)."""
    need = sources(tasks, overrides)
    if not need:
        yield {}
        return
    import datasets
    import nltk
    import requests

    from .io import verify_sha256

    if data is None:
        raise ValueError(f"RULER tasks {[t for t in tasks if t in NEEDS]} need downloads ({', '.join(need)}): "
                         "rule ruler_data fetches them")
    files = {n: Path(data) / s["file"] for n, s in need.items()}
    used = {}
    for n, f in files.items():
        if not f.is_file():
            raise FileNotFoundError(f"{f}: {need[n]['what']} was not fetched (`snakemake downloads`)")
        used[n] = {"url": need[n]["url"], "sha256": verify_sha256(f, need[n].get("sha256"))}
    urls = {SOURCES[n]["url"]: files[n] for n in ("squad", "hotpotqa") if n in files}  # the harness's own URLs
    load_dataset, get = datasets.load_dataset, requests.get

    def local_dataset(path, *args, **kwargs):
        if path == ESSAYS_ID and "essays" in files:
            return datasets.Dataset.from_parquet(str(files["essays"]))
        raise RuntimeError(f"the RULER tasks asked datasets.load_dataset({path!r}), which the pipeline does not fetch")

    def local_get(url, *args, **kwargs):
        if url not in urls:
            raise RuntimeError(f"the RULER tasks asked to download {url}, which the pipeline does not fetch")
        return _LocalResponse(urls[url])

    unpacked = tempfile.mkdtemp(prefix="pi_repro-punkt-") if "punkt_tab" in files else None
    if unpacked:
        import zipfile

        with zipfile.ZipFile(files["punkt_tab"]) as z:
            z.extractall(Path(unpacked) / "tokenizers")
        nltk.data.path.insert(0, unpacked)
    datasets.load_dataset, requests.get = local_dataset, local_get
    try:
        yield used
    finally:
        datasets.load_dataset, requests.get = load_dataset, get
        if unpacked:
            import shutil

            nltk.data.path.remove(unpacked)
            shutil.rmtree(unpacked, ignore_errors=True)


class _LocalResponse:
    """What the harness reads of a ``requests`` response (its QA loaders: ``raise_for_status``, ``json``)."""

    def __init__(self, path: Path):
        self.path = path

    def raise_for_status(self):
        return None

    def json(self):
        import json

        return json.loads(self.path.read_text())


def check_tasks(tasks: list[str]) -> list[str]:
    """Problems with a list of RULER task names (empty: fine)."""
    return [f"{t} is not a RULER task of lm-evaluation-harness 0.4.13 ({', '.join(SYNTHETIC + DOWNLOADED)})"
            for t in tasks if t not in SYNTHETIC and t not in DOWNLOADED]


def offline(stub: Path) -> None:
    """No download at task load: the hub offline, and an NLTK data folder that satisfies the harness's import-time
    check for punkt_tab unless one is installed (only the essay haystack uses it: it reads the pinned copy,
    ``harness_reads``)."""
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[k] = "1"
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        (stub / "tokenizers" / "punkt_tab").mkdir(parents=True, exist_ok=True)
        os.environ["NLTK_DATA"] = str(stub) + os.pathsep + os.environ.get("NLTK_DATA", "")
        nltk.data.path.insert(0, str(stub))


@contextmanager
def timeout(seconds: int, what: str):
    """Raise TimeoutError naming ``what`` if the block runs longer (main thread only)."""
    def fire(*_):
        raise TimeoutError(what)

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def load_tasks(tasks: list[str], tokenizer_dir: str | Path, lengths: list[int], seed: int, per_length: int = 900,
               data: str | Path | None = None, overrides: dict | None = None) -> tuple[dict, dict]:
    """The harness's tasks with their prompts built at ``lengths`` by the tokenizer in ``tokenizer_dir``, seeded
    (the harness draws haystacks and keys from Python's and NumPy's global generators), what they download read
    from ``data`` (``harness_reads``); and the downloads read (name -> url, sha256). A task that builds nothing
    in ``per_length`` seconds a length is stopped, named (variable tracking retries forever at a short length)."""
    import numpy as np
    from lm_eval.tasks import TaskManager

    bad = check_tasks(tasks)
    if bad:
        raise ValueError("; ".join(bad))
    out, seconds = {}, per_length * len(lengths)
    with harness_reads(data, tasks, overrides) as used:
        for t in tasks:  # one at a time: a task that cannot fit a length is named
            random.seed(seed)
            np.random.seed(seed)
            tm = TaskManager(metadata={"tokenizer": str(tokenizer_dir), "max_seq_lengths": sorted(lengths)})
            try:
                with timeout(seconds, f"RULER task {t} built no prompt of lengths {lengths} in {seconds} s: the "
                                      "shortest length is too short for it with this tokenizer (variable tracking's "
                                      "in-context example alone takes about 400 tokens); drop it or use longer "
                                      "lengths"):
                    out.update(tm.load([t])["tasks"])
            except TimeoutError as e:
                raise ValueError(str(e)) from None
    return out, used


def share(n: int, part: tuple[int, int] | None) -> range:
    """The prompts (of the first ``n`` of a task at a length) that shard ``part`` = (index, of) scores: a
    contiguous share; every prompt once over the ``of`` shards (all of them without ``part``)."""
    if part is None:
        return range(n)
    index, of = part
    if not 0 <= index < of <= n:
        raise ValueError(f"shard {index} of {of}: a RULER job of {n} prompts per task and length has 1 to {n} shards")
    return range(index * n // of, (index + 1) * n // of)


def choose(loaded: dict, lengths: list[int], n: int, part: tuple[int, int] | None = None) -> dict[str, list[int]]:
    """The first ``n`` prompts of each task at each length (the harness stores them length by length), or shard
    ``part``'s share of them; refuses a length where a task built fewer, or built one without a target (common
    words at a too short length)."""
    out, mine = {}, share(n, part)
    for name, task in loaded.items():
        docs = task.dataset["test"]
        picked = []
        for length in lengths:
            at = [i for i, m in enumerate(docs["max_length"]) if m == length][:n]
            if len(at) < n:
                raise ValueError(f"RULER task {name} built {len(at)} prompts of length {length}; {n} are asked")
            empty = [i for i in at if not docs[i]["outputs"]]
            if empty:
                raise ValueError(f"RULER task {name} at length {length}: prompts without a target (items {empty}): "
                                 "the length is too short for the task with this tokenizer")
            picked += [at[i] for i in mine]
        out[name] = picked
    return out


def match_all(generation: str, targets: list[str]) -> float:
    """RULER's ``string_match_all``, written from its definition: the fraction of the targets that occur in the
    output, case-insensitive (control characters of the output read as line breaks, surrounding space removed)."""
    text = re.sub(r"[\x00-\x1f]", "\n", generation).strip().lower()
    return sum(t.lower() in text for t in targets) / len(targets)


def evaluate(model, tokenizer, tokenizer_dir: str | Path, tasks: list[str], lengths: list[int], n: int, seed: int,
             batch_size: int = 1, part: tuple[int, int] | None = None, data: str | Path | None = None,
             overrides: dict | None = None) -> dict:
    """Score ``model`` on ``tasks`` at ``lengths``, ``n`` prompts each (or shard ``part``'s share of them): per
    length, each task's score (0-100) and their mean, and every sample (prompt, target, greedy output, score).
    Each sample's score is recomputed from the output by :func:`match_all` and must equal the harness's; no prompt
    may be cut. Every prompt is generated alone, so a shard's samples are those of the whole job, exactly."""
    import lm_eval
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    from .modeling import input_device

    lengths = sorted(lengths)
    offline(Path(tempfile.gettempdir()) / "pi_repro-nltk-stub")
    loaded, fetched = load_tasks(tasks, tokenizer_dir, lengths, seed, data=data, overrides=overrides)
    picked = choose(loaded, lengths, n, part)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=lengths[-1] + RULER_ANSWER, batch_size=batch_size,
              device=str(input_device(model)))
    res = evaluator.evaluate(lm=lm, task_dict=loaded, samples=picked, log_samples=True, bootstrap_iters=0)
    samples = []
    for name in tasks:
        for s in res["samples"][name]:
            doc, gen = s["doc"], s["resps"][0][0]
            length, kw = doc["max_length"], s["arguments"][0][1]
            prompt = s["arguments"][0][0]
            used = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if used + kw["max_gen_toks"] > lm.max_length:
                raise ValueError(f"RULER task {name} at length {length}: a prompt of {used} tokens and its answer "
                                 f"({kw['max_gen_toks']}) exceed {lm.max_length}: the harness would cut it")
            score = s[str(length)]
            if abs(match_all(gen, doc["outputs"]) - score) > 1e-9:
                raise RuntimeError(f"RULER task {name}, item {s['doc_id']}: the harness scored {score}, its output "
                                   f"{gen!r} against {doc['outputs']} gives {match_all(gen, doc['outputs'])}")
            samples.append({"task": name, "length": length, "doc_id": s["doc_id"], "prompt": prompt,
                            "prompt_tokens": used, "max_gen_toks": kw["max_gen_toks"], "target": doc["outputs"],
                            "generation": gen, "score": score})
    return {"harness_version": lm_eval.__version__, "downloads": fetched, **summarize(samples, tasks, lengths),
            "task_versions": {t: res["versions"].get(t) for t in tasks}}


def summarize(samples: list[dict], tasks: list[str], lengths: list[int]) -> dict:
    """Per length, each task's score (0-100, the mean over its samples) and the mean of the tasks; the samples in
    one order (task, length, the harness's item): a merged record's are the whole job's."""
    samples = sorted(samples, key=lambda x: (tasks.index(x["task"]), x["length"], x["doc_id"]))
    by_length = {}
    for length in sorted(lengths):
        rec = {"tasks": {}}
        for name in tasks:
            mine = [x["score"] for x in samples if x["task"] == name and x["length"] == length]
            if not mine:
                raise ValueError(f"RULER task {name} has no sample at length {length}")
            rec["tasks"][name] = {"score": 100 * sum(mine) / len(mine), "n": len(mine)}
        rec["mean"] = sum(t["score"] for t in rec["tasks"].values()) / len(rec["tasks"])
        by_length[str(length)] = rec
    return {"lengths": by_length, "samples": samples}


# what every shard of one job shares (and its merged record keeps)
SAME = ("task", "dataset", "size", "method", "ctx", "tag", "step", "mixture", "model", "model_sha256",
        "scale_factor", "harness_version", "protocol", "task_versions", "downloads")


def merge_shards(records: list[dict]) -> dict:
    """The record of a RULER job from its shards' records (``shard: {index, of}``): every shard of one checkpoint
    and protocol, each once; their samples together, scored as the unsharded job scores them."""
    if not records:
        raise ValueError("no RULER shard records to merge")
    of = records[0]["shard"]["of"]
    got = sorted(r["shard"]["index"] for r in records)
    if any(r["shard"]["of"] != of for r in records) or got != list(range(of)):
        raise ValueError(f"RULER shards to merge: indexes {got} of {[r['shard']['of'] for r in records]}; "
                         f"expected each of 0..{of - 1} once")
    for key in SAME:
        values = {repr(r.get(key)) for r in records}
        if len(values) > 1:
            raise ValueError(f"RULER shards disagree on {key}: {sorted(values)} (shards of different runs)")
    first = records[0]
    tasks, lengths = first["protocol"]["tasks"], [int(x) for x in first["lengths"]]
    out = {k: v for k, v in first.items() if k not in ("shard", "seconds", "lengths", "samples")}
    out.update(summarize([x for r in records for x in r["samples"]], tasks, lengths),
               shards=of, seconds=round(sum(r.get("seconds", 0) for r in records), 2))
    return out


def effective_length(means: dict[int, float], threshold: float) -> int:
    """RULER's effective length: the largest length whose mean is at or above ``threshold``, every shorter length
    tested too (as passkey's k_max); 0 when the shortest is below it."""
    out = 0
    for length in sorted(means):
        if means[length] < threshold:
            break
        out = length
    return out
