"""RULER through lm-evaluation-harness (pi_repro.ruler, table kind ``ruler``): the score of one sample checked by
hand against the model's own greedy output; RULER's metric and effective length written from their definitions;
the config checks; the table and its finding from records; the cost plan prices its jobs."""
import copy
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from conftest import smoke_config  # noqa: E402
from pi_repro import config as C, cost, kinds, ruler, tables, targets  # noqa: E402
from pi_repro.findings import ruler_findings  # noqa: E402


def test_the_metric_is_rulers_string_match_all():
    """The fraction of the targets found in the output, case-insensitive, control characters read as breaks:
    the harness's own function agrees on every case."""
    from lm_eval.tasks.ruler.common_utils import postprocess_pred, string_match_all

    cases = [(" The special magic number is 7281934.", ["7281934"], 1.0),
             ("answer: ABC and d", ["abc", "D", "x"], 2 / 3),
             ("\x01 4432\x02", ["4432"], 1.0),
             ("nothing", ["12"], 0.0),
             ("ab\x0bc", ["ab\nc"], 1.0)]
    for gen, want, score in cases:
        assert ruler.match_all(gen, want) == pytest.approx(score)
        assert string_match_all(postprocess_pred([gen]), [want]) == pytest.approx(score)


def test_the_effective_length_is_the_last_length_of_an_unbroken_run_above_the_threshold():
    assert ruler.effective_length({4096: 90, 8192: 85, 16384: 70, 32768: 86}, 85) == 8192
    assert ruler.effective_length({4096: 84, 8192: 99}, 85) == 0
    assert ruler.effective_length({4096: 85.0}, 85) == 4096  # at the threshold counts
    assert ruler.effective_length({}, 50) == 0


def test_every_ruler_task_of_the_harness_is_known_and_what_it_downloads_is_pinned():
    """RULER's 13 tasks as the harness ships them: the six synthetic ones need nothing; the essay needles need the
    essays and NLTK's sentence splitter, the QA tasks their sets; every source has a pinned URL (a hub commit where
    it is the hub) and all but HotpotQA a sha256."""
    import lm_eval

    shipped = {line.split(":", 1)[1].strip() for f in (Path(lm_eval.__file__).parent / "tasks/ruler").glob("*.yaml")
               for line in f.read_text().splitlines() if line.startswith("task:") and line.split(":", 1)[1].strip()}
    assert set(ruler.SYNTHETIC) | set(ruler.DOWNLOADED) == shipped and len(shipped) == 13
    assert ruler.check_tasks(list(shipped)) == [] and "not a RULER task" in ruler.check_tasks(["nope"])[0]
    assert ruler.sources(list(ruler.SYNTHETIC)) == {}
    assert list(ruler.sources(["niah_multivalue", "ruler_qa_hotpot"])) == ["essays", "punkt_tab", "hotpotqa"]
    assert ruler.ESSAYS_REVISION in ruler.SOURCES["essays"]["url"] and "/resolve/" in ruler.SOURCES["hotpotqa"]["url"]
    assert all(len(s["sha256"] or "") == 64 for n, s in ruler.SOURCES.items() if n != "hotpotqa")
    mirror = ruler.sources(["ruler_qa_squad"], {"squad": {"url": "https://mirror/squad.json", "sha256": None}})
    assert mirror["squad"]["url"] == "https://mirror/squad.json" and mirror["squad"]["file"] == "squad.json"


def serve(folder: Path):
    """A local HTTP server of ``folder`` (the test's stand-in for the internet): its base URL and a stop function."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}", srv.shutdown


def test_a_download_is_checked_against_its_pin_and_never_left_half_written(tmp_path):
    import hashlib

    (tmp_path / "web").mkdir()
    body = b'{"data": []}' * 1000
    (tmp_path / "web/squad.json").write_bytes(body)
    url, stop = serve(tmp_path / "web")
    try:
        spec = dict(ruler.SOURCES["squad"], url=f"{url}/squad.json", sha256=hashlib.sha256(body).hexdigest())
        got = ruler.fetch(spec, tmp_path / "data/squad.json")
        assert (tmp_path / "data/squad.json").read_bytes() == body
        assert got == {"url": spec["url"], "sha256": spec["sha256"], "bytes": len(body), "pinned": True}
        with pytest.raises(ValueError, match="checksum mismatch .*expected sha256 0{64}"):
            ruler.fetch(dict(spec, sha256="0" * 64), tmp_path / "bad/squad.json")
        with pytest.raises(RuntimeError, match=r"could not download .*/missing\.json \(SQuAD 2\.0.*404"):
            ruler.fetch(dict(spec, url=f"{url}/missing.json"), tmp_path / "bad/squad.json")
        assert not (tmp_path / "bad/squad.json").exists() and list((tmp_path / "bad").iterdir()) == []
        assert ruler.fetch(dict(spec, sha256=None), tmp_path / "free/squad.json")["pinned"] is False
    finally:
        stop()


def test_the_harness_reads_only_the_fetched_copies(tmp_path):
    """Inside ``harness_reads`` the harness's downloads are the fetched files, each checked against its pin first;
    a missing one, a changed one, or any other download is refused by name; outside, nothing is changed."""
    import datasets
    import requests

    (tmp_path / "squad.json").write_text('{"data": []}')
    free = {"squad": {"sha256": None}}
    with ruler.harness_reads(tmp_path, ["ruler_qa_squad"], free) as used:
        assert requests.get(ruler.SOURCES["squad"]["url"]).json() == {"data": []}
        with pytest.raises(RuntimeError, match="asked to download https://example.org/x, which the pipeline"):
            requests.get("https://example.org/x")
        with pytest.raises(RuntimeError, match=r"load_dataset\('wikitext'\)"):
            datasets.load_dataset("wikitext")
    assert used["squad"]["url"] == ruler.SOURCES["squad"]["url"] and len(used["squad"]["sha256"]) == 64
    assert requests.get.__module__ == "requests.api" and datasets.load_dataset.__module__ == "datasets.load"
    with pytest.raises(ValueError, match="checksum mismatch"):  # the default pin: not this file
        with ruler.harness_reads(tmp_path, ["ruler_qa_squad"]):
            pass
    with pytest.raises(FileNotFoundError, match=r"hotpotqa\.json: HotpotQA.* was not fetched"):
        with ruler.harness_reads(tmp_path, ["ruler_qa_hotpot"]):
            pass
    with pytest.raises(ValueError, match="need downloads .*rule ruler_data"):
        with ruler.harness_reads(None, ["niah_single_2"]):
            pass
    with ruler.harness_reads(None, ["niah_single_1"]) as used:
        assert used == {}


def fake_downloads(folder: Path) -> dict:
    """Stand-ins for the four downloads, in their real formats (essays parquet, punkt_tab zip, SQuAD 2.0 and
    HotpotQA JSON), with words and questions no real one has; the ``ruler.sources`` pins that accept them."""
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    words = ["kestrel", "marmalade", "quorum", "bivouac", "lantern", "orchard", "tundra", "zephyr"]
    essays = [" ".join(f"{words[(i + j) % 8].capitalize()} {words[(3 * i + j) % 8]} {words[j % 8]}."
                       for j in range(400)) for i in range(5)]
    pd.DataFrame({"text": essays}).to_parquet(folder / "essays.parquet")
    with zipfile.ZipFile(folder / "punkt_tab.zip", "w") as z:
        for f in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
            z.writestr(f"punkt_tab/english/{f}", "")
    paras = [{"context": f"Registry entry {i}: the code of item {i} is Q{1000 + i}.",
              "qas": [{"question": f"What is the code of item {i}?", "answers": [{"text": f"Q{1000 + i}"}],
                       "is_impossible": False}]} for i in range(510)]
    (folder / "squad.json").write_text(json.dumps({"data": [{"paragraphs": paras[j:j + 10]}
                                                            for j in range(0, 510, 10)]}))
    hot = [{"question": f"Which river does town {i} stand on?", "answer": f"river{i}",
            "context": [[f"Town {i}", [f"Town {i} stands on river{i}."]], [f"Other {i}", ["Nothing here."]]]}
           for i in range(510)]
    (folder / "hotpotqa.json").write_text(json.dumps(hot))
    return {n: {"url": s["url"], "sha256": hashlib.sha256((folder / s["file"]).read_bytes()).hexdigest()}
            for n, s in ruler.SOURCES.items()}


@pytest.mark.slow
def test_the_essay_and_qa_tasks_are_built_from_the_fetched_copies_offline(tmp_path):
    """The harness builds niah_single_2 (essay haystack, split into sentences by the fetched punkt_tab), SQuAD and
    HotpotQA prompts from the fetched files alone, with the hub offline: the prompts hold their words and
    questions, the targets their answers."""
    pins = fake_downloads(tmp_path / "data")
    ruler.offline(tmp_path / "stub")
    loaded, used = ruler.load_tasks(["niah_single_2", "ruler_qa_squad", "ruler_qa_hotpot"],
                                    ROOT / "resources/models/mini", [1024], 0, data=tmp_path / "data", overrides=pins)
    assert {n: u["sha256"] for n, u in used.items()} == {n: p["sha256"] for n, p in pins.items()}
    docs = {name: task.dataset["test"] for name, task in loaded.items()}
    assert all(len(d) == 500 for d in docs.values())
    essay = docs["niah_single_2"][0]
    assert "special magic number" in essay["input"] and essay["outputs"][0] in essay["input"]
    assert any(w.capitalize() in essay["input"] for w in ("kestrel", "marmalade", "quorum", "bivouac", "lantern",
                                                          "orchard", "tundra", "zephyr"))
    squad = docs["ruler_qa_squad"][0]
    assert "What is the code of item 0?" in squad["input"] and squad["outputs"] == ["Q1000"]
    assert "Registry entry" in squad["input"]
    hot = docs["ruler_qa_hotpot"][0]
    assert "Which river does town 0 stand on?" in hot["input"] and hot["outputs"] == ["river0"]


def test_a_ruler_table_with_essay_and_qa_tasks_fetches_them_first_and_hands_them_to_its_jobs(tmp_path):
    """`snakemake downloads` fetches exactly what the tasks need (one ruler_data job each); every RULER job
    waits for them and reads them from the run's data folder."""
    import re
    import subprocess

    import yaml

    cfg = smoke_with(ruler={"tasks": ["niah_single_1", "niah_single_3", "ruler_qa_squad"], "lengths": [1024],
                            "samples": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    base = [sys.executable, "-m", "snakemake", "--configfile", str(tmp_path / "c.yaml"), "--config",
            "run=ruler-data-dry", "-n", "-p"]
    p = subprocess.run(base + ["downloads"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    fetched = re.findall(r"fetch_ruler_data\.py --spec .* --out results/ruler-data-dry/data/ruler/(\S+)", p.stdout)
    assert sorted(fetched) == ["essays.parquet", "punkt_tab.zip", "squad.json"]
    p = subprocess.run(base + ["table7"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = re.findall(r"ruler\.py --model \S+ .* --data results/ruler-data-dry/data/ruler --sources", p.stdout)
    assert len(runs) == 2 and "rule ruler_data:" in p.stdout


def smoke_with(**tables_and_blocks) -> dict:
    cfg = smoke_config()
    for k, v in tables_and_blocks.items():
        target = cfg["tables"] if k.startswith("table") else cfg
        if v is None:
            target.pop(k, None)
        else:
            target[k] = v
    return cfg


@pytest.mark.parametrize("change, message", [
    ({"ruler": None}, "needs the config's ruler block"),
    ({"ruler": {"lengths": [1024], "tasks": ["niah_single_9"]}}, "niah_single_9 is not a RULER task"),
    ({"ruler": {"lengths": [1024], "sources": {"squad": {"url": "ftp://x"}}}}, r"ruler\.sources\.squad\.url"),
    ({"table7": {"kind": "ruler", "threshold": 50, "rows": [{"size": "tiny", "method": "PI", "ctx": 64}]}},
     "no length of ruler.lengths"),
    ({"table7": {"kind": "ruler", "rows": [{"size": "tiny", "method": "PI", "ctx": 64, "lengths": [1024]}]}},
     "threshold is the base model's mean at L"),
    ({"table7": {"kind": "ruler", "threshold": 50, "rows": [{"size": "tiny", "method": "PI", "ctx": 64,
                                                              "steps": [5], "lengths": [1024]}]}},
     "step 5 is not one of the extension's checkpoints"),
    ({"table7": {"kind": "ruler", "dataset": "pg19", "threshold": 50,
                 "rows": [{"size": "tiny", "method": "None", "lengths": [1024]}]}}, "generates its prompts"),
])
def test_bad_ruler_tables_are_refused_by_name(change, message):
    cfg = smoke_with(**change)
    with pytest.raises(targets.ConfigError, match=message):
        C.validate(cfg)


def test_the_smoke_ruler_table_plans_one_job_per_model_with_its_lengths_and_prices_it():
    cfg = C.validate(smoke_config())
    assert kinds.table_records(cfg, "table7") == [("ruler", "synthetic", "tiny", "base"),
                                                  ("ruler", "synthetic", "tiny", "PI-64/step6")]
    assert kinds.eval_windows(cfg, "ruler", "synthetic", "tiny", "PI-64/step6") == [1024]
    rows = [r for r in cost.plan(cfg) if r["rule"] == "ruler"]
    assert len(rows) == 2 and all(r["gpu_hours"] > 0 for r in rows), rows
    assert [r["what"] for r in rows] == ["tiny base at 1024", "tiny PI-64/step6 at 1024"]


def record(method, ctx, step, means: dict[int, float], tasks=("niah_single_1", "ruler_vt")) -> dict:
    return {"size": "7B", "method": method, "ctx": ctx, "step": step, "harness_version": "0.4.13",
            "protocol": {"tasks": list(tasks), "samples": 4, "answer_room": 128},
            "lengths": {str(x): {"mean": m, "tasks": {t: {"score": m + (i - 0.5) * 2, "n": 4}
                                                      for i, t in enumerate(tasks)}} for x, m in means.items()}}


def test_the_table_shows_each_task_and_the_mean_and_each_models_effective_length():
    recs = [record("PI", 8192, 1000, {2048: 80, 4096: 78, 8192: 70}),
            record("None", 2048, 0, {2048: 75, 4096: 10}),
            record("FT", 8192, 1000, {2048: 79, 4096: 60, 8192: 20})]
    t = tables.ruler_table(recs, 2048)
    assert list(t["method"]) == ["None"] * 3 + ["FT"] * 3 + ["PI"] * 3
    assert list(t["task"][:3]) == ["mean", "niah_single_1", "ruler_vt"]
    mean = t[t["task"] == "mean"].set_index("method")
    assert mean.loc["PI", "effective"] == 4096  # 78 >= 75 (the base model's mean at L), 70 < 75
    assert mean.loc["FT", "effective"] == 2048 and mean.loc["None", "effective"] == 2048
    assert pd.isna(t[t["task"] == "ruler_vt"]["effective"]).all()
    assert tables.ruler_table(recs, 2048, threshold=50).set_index(["method", "task"]).loc[("PI", "mean"),
                                                                                            "effective"] == 8192
    found = {r["where"]: r["status"] for r in ruler_findings("table7", t, 2048, {"9": "x"})}
    assert found == {"table7 7B PI-8192 step 1000": "PASS"}
    low = tables.ruler_table([record("PI", 8192, 1000, {2048: 70, 4096: 78}), recs[1]], 2048)
    assert [r["status"] for r in ruler_findings("table7", low, 2048, {"9": "x"})] == ["FAIL"]
    with pytest.raises(ValueError, match="ruler records for the cell"):
        tables.ruler_table([recs[0], recs[0]], 2048)
    tagged = dict(record("PI", 8192, 1000, {2048: 90, 4096: 90, 8192: 90}), tag="redpajama")  # another model
    both = tables.ruler_table(recs + [tagged], 2048)
    assert list(both[both["task"] == "mean"]["tag"]) == ["-", "-", "-", "redpajama"]
    assert [r["where"] for r in ruler_findings("table7", both, 2048, {"9": "x"})] == [
        "table7 7B PI-8192 step 1000", "table7 7B PI-8192-redpajama step 1000"]
    shown = tables.ruler_display(both)
    assert list(shown.columns[:6]) == ["Size", "Model ctx", "Method", "Tag", "Step", "Task"]
    assert list(shown["Effective length"][:2]) == ["2048", "-"] and shown["2048"].iloc[0] == "75.0"


@pytest.mark.slow
def test_one_samples_score_checked_by_hand_against_the_models_greedy_output(smollm2_dir):
    """SmolLM2-135M on RULER's single-needle task at 1024 tokens: the prompt the harness built, fed to the model
    with our own greedy loop, gives the output the record holds, and that output holds the needle's value, so the
    score is 1 (a scorer that returns 0, or an output from another prompt, fails here)."""
    from pi_repro import modeling

    model, tok = modeling.load_model(smollm2_dir), modeling.load_tokenizer(smollm2_dir)
    rec = ruler.evaluate(model, tok, smollm2_dir, ["niah_single_1"], [1024], 1, seed=0)
    (s,) = rec["samples"]
    assert s["length"] == 1024 and s["prompt_tokens"] + s["max_gen_toks"] <= 1024 + ruler.RULER_ANSWER
    ids = tok(s["prompt"], return_tensors="pt", add_special_tokens=False).input_ids
    out, past, step = [], None, ids
    with torch.no_grad():
        for _ in range(s["max_gen_toks"]):  # greedy: the most likely next token, until end of text
            o = model(step, past_key_values=past, use_cache=True)
            past, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            step = torch.tensor([[nxt]])
    mine = tok.decode(out, skip_special_tokens=True)
    assert mine.strip() == s["generation"].strip()
    (value,) = s["target"]
    assert value.isdigit() and value in mine  # the needle's number, retrieved
    assert s["score"] == 1.0 and rec["lengths"]["1024"]["mean"] == 100.0
    assert json.dumps(rec)  # a record is plain JSON


def test_quoted_cells_of_another_model_are_shown_after_ours_and_never_judged():
    from pi_repro import paper

    cells = paper.load_cells(ROOT / "resources/ruler/cells.csv")
    assert all(paper.other_work(c) for c in cells) and [c["value"] for c in cells] == ["88.2", "81.1", "69.4", "63.0"]
    recs = [record("PI", 8192, 1000, {2048: 80, 4096: 78, 8192: 70}), record("None", 2048, 0, {2048: 75})]
    t = tables.ruler_table(recs, 2048, quoted=cells)
    q = t[t["method"] == "Together-7B-32K"]
    assert len(q) == 1 and q.index[0] == len(t) - 1 and list(q[["4096", "32768"]].iloc[0]) == [88.2, 63.0]
    assert pd.isna(q["effective"].iloc[0]) and pd.isna(q["step"].iloc[0])
    assert [r["where"] for r in ruler_findings("table7", t, 2048, {"9": "x"})] == ["table7 7B PI-8192 step 1000"]


def test_the_paper_dry_run_has_one_ruler_job_per_model_at_its_lengths_priced():
    """config/paper.yaml's table7: every extended 7B and 13B model at 4096 ... its window, the base models at L and 2L;
    each job (or each of its shards) in the cost plan; `snakemake table7` plans its upstream only (no perplexity,
    passkey or benchmark)."""
    import re
    import subprocess

    p = subprocess.run([sys.executable, "-m", "snakemake", "table7", "--configfile", "config/paper.yaml", "-n", "-p"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    jobs = dict(re.findall(r"ruler\.py --model results/paper/models/(\S+) --tasks \S+ --lengths ([\d,]+)", out))
    upto = {8192: "4096,8192", 16384: "4096,8192,16384", 32768: "4096,8192,16384,32768"}
    want = {f"{size}/base": "2048,4096" for size in ("7B", "13B")}
    want |= {f"{size}/FT-8192/step10000": upto[8192] for size in ("7B", "13B")}
    want |= {f"{size}/PI-{c}/step1000": upto[c] for size in ("7B", "13B") for c in upto}
    want["7B/PI-8192-redpajama/step1000"] = upto[8192]
    assert jobs == want
    counts = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}
    assert not {"perplexity", "passkey", "benchmark", "summarize"} & set(counts)
    # RULER's 500 prompts: the jobs the plan puts past 12 h run as shards of about 12 h (13B PI-32768: 29.6 h, 3)
    cfg = C.load(ROOT / "config/paper.yaml")
    shards = {k[2:]: n for k, n in cost.eval_shards(cfg).items() if k[0] == "ruler" and n > 1}
    assert shards == {("13B", "PI-32768/step1000"): 3, ("7B", "PI-32768/step1000"): 2}
    assert counts["ruler"] == 11 and counts["ruler_shard"] == 5  # a sharded job's ruler job merges on a CPU
    assert len(re.findall(r"ruler\.py --model \S+ .* --shard \d \d", out)) == 5
    assert len(re.findall(r"ruler\.py --merge (?:\S+/shards/\d-of-\d\.json ?)+", out)) == 2
    rows = [r for r in cost.plan(cfg) if r["rule"].startswith("ruler")]
    assert len(rows) == 14 and all(r["gpu_hours"] > 0 for r in rows)
    assert max(r["wall_hours"] for r in rows) <= cfg["ruler"]["shard_hours"]


def test_an_evaluation_the_cluster_would_stop_at_its_time_limit_is_refused_by_name():
    """RULER's 500 prompts per task and length would take the 13B PI-32768 job an estimated 29.6 h on its GPU, past
    the paper cluster's 24 h: without shards, validation refuses it before anything runs (config/paper.yaml splits
    it into shards of about 12 h); a shard does not resume, so one longer than its runtime is refused too."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert cfg["ruler"]["samples"] == 500
    C.validate(copy.deepcopy(cfg))
    del cfg["ruler"]["shard_hours"]
    with pytest.raises(targets.ConfigError, match=r"sizes\.13B\.resources\.eval_runtime: job ruler 13B "
                                                  r"PI-32768/step1000 at 4096, 8192, 16384, 32768 needs an "
                                                  r"estimated 29\.6 h.*or shards \(ruler\.shard_hours\)"):
        C.validate(copy.deepcopy(cfg))
    cfg["ruler"]["shards"] = 2  # 14.8 h each: fits
    C.validate(copy.deepcopy(cfg))
    cfg["sizes"]["13B"]["resources"]["eval_runtime"] = 720  # two shards of 14.8 h: each stopped at 12 h
    with pytest.raises(targets.ConfigError, match=r"job ruler_shard 13B PI-32768/step1000 .* shard 1/2 needs an "
                                                  r"estimated 14\.8 h .* asks 720 min"):
        C.validate(copy.deepcopy(cfg))
    cfg["ruler"]["samples"] = 501  # the harness builds 500 prompts per task and length
    with pytest.raises(targets.ConfigError, match=r"ruler\.samples: 501 is greater than the maximum of 500"):
        C.validate(cfg)


# ------------------------------------------------------------------------------------------------- shards
def test_shards_share_each_tasks_prompts_at_each_length_once():
    for n in (1, 2, 5, 500):
        for of in {1, 2, 3, n}:
            if of > n:
                continue
            parts = [list(ruler.share(n, (i, of))) for i in range(of)]
            assert sum(parts, []) == list(range(n)) and all(parts), (n, of)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert list(ruler.share(4, None)) == [0, 1, 2, 3]
    for bad in ((2, 2), (-1, 2), (0, 5)):
        with pytest.raises(ValueError, match="1 to 4 shards"):
            ruler.share(4, bad)


def shard_record(index, of, samples, **over):
    tasks, lengths = ["niah_single_1", "ruler_vt"], [1024, 2048]
    return {"task": "ruler", "size": "7B", "method": "PI", "ctx": 8192, "step": 1000, "model_sha256": "ab",
            "harness_version": "0.4.13", "protocol": {"tasks": tasks, "samples": 4}, "seconds": 3.0,
            "task_versions": {t: 0 for t in tasks}, "shard": {"index": index, "of": of},
            **ruler.summarize(samples, tasks, lengths), **over}


def sample(task, length, doc_id, score):
    return {"task": task, "length": length, "doc_id": doc_id, "score": score}


def test_merged_shards_are_the_whole_jobs_record_and_a_wrong_set_is_refused():
    """Two shards of 2 prompts each per task and length merge into the record of the 4: each task's score the
    mean of its 4 samples, the samples in the whole job's order; a missing, repeated or foreign shard is named."""
    tasks, lengths = ["niah_single_1", "ruler_vt"], [1024, 2048]
    whole = [sample(t, x, i + (0 if x == 1024 else 500), (i * 7 + len(t) + x) % 3 / 2)
             for t in tasks for x in lengths for i in range(4)]
    halves = [[s for s in whole if s["doc_id"] % 500 in (0, 1)], [s for s in whole if s["doc_id"] % 500 in (2, 3)]]
    merged = ruler.merge_shards([shard_record(1, 2, halves[1]), shard_record(0, 2, halves[0])])
    want = ruler.summarize(whole, tasks, lengths)
    assert merged["samples"] == whole == want["samples"] and merged["lengths"] == want["lengths"]
    vt = [s["score"] for s in whole if s["task"] == "ruler_vt" and s["length"] == 2048]
    assert merged["lengths"]["2048"]["tasks"]["ruler_vt"] == {"score": 100 * sum(vt) / 4, "n": 4}
    assert merged["shards"] == 2 and merged["seconds"] == 6.0 and "shard" not in merged
    assert merged["model_sha256"] == "ab" and merged["protocol"]["samples"] == 4
    with pytest.raises(ValueError, match=r"indexes \[0\] .*expected each of 0\.\.1 once"):
        ruler.merge_shards([shard_record(0, 2, halves[0])])
    with pytest.raises(ValueError, match=r"indexes \[0, 0\]"):
        ruler.merge_shards([shard_record(0, 2, halves[0]), shard_record(0, 2, halves[1])])
    with pytest.raises(ValueError, match="disagree on model_sha256"):
        ruler.merge_shards([shard_record(0, 2, halves[0]), shard_record(1, 2, halves[1], model_sha256="cd")])
    with pytest.raises(ValueError, match="ruler_vt has no sample at length 2048"):
        ruler.summarize([s for s in whole if not (s["task"] == "ruler_vt" and s["length"] == 2048)], tasks, lengths)


def test_shards_are_sized_by_the_ruler_block_and_priced_one_row_each():
    cfg = smoke_with(ruler={"tasks": ["niah_single_1"], "lengths": [1024], "samples": 2, "shards": 5})
    C.validate(cfg)
    assert {k: n for k, n in cost.eval_shards(cfg).items() if k[0] == "ruler"} == {  # at most the prompts a length
        ("ruler", "synthetic", "tiny", "base"): 2, ("ruler", "synthetic", "tiny", "PI-64/step6"): 2}
    rows = [r for r in cost.plan(cfg) if r["rule"].startswith("ruler")]
    assert [(r["rule"], r["what"]) for r in rows] == [
        ("ruler_shard", f"tiny {m} at 1024, shard {k}/2") for m in ("base", "PI-64/step6") for k in (1, 2)]
    whole = [r for r in cost.plan(smoke_config()) if r["rule"] == "ruler"]
    assert sum(r["gpu_hours"] for r in rows) == pytest.approx(sum(r["gpu_hours"] for r in whole))
    merge = [r for r in cost.cluster_plan(cfg) if r["job"].startswith("merge shards")]
    assert [(r["job"], r["count"]) for r in merge] == [("merge shards (ruler)", 2)]
    for both in ({"shards": 2, "shard_hours": 1}, ):
        with pytest.raises(targets.ConfigError, match=r"ruler\.shards: set either shards"):
            C.validate(smoke_with(ruler={"lengths": [1024], "tasks": ["niah_single_1"], **both}))
    with pytest.raises(targets.ConfigError, match=r"ruler\.shard_hours: 2 h is longer than the 0\.5 h"):
        C.validate(smoke_with(ruler={"lengths": [1024], "tasks": ["niah_single_1"], "shard_hours": 2}))


@pytest.mark.slow
def test_a_ruler_job_split_into_shards_gives_the_whole_jobs_record_through_snakemake(smoke_run, tmp_path):
    """`snakemake table7` on a copy of the smoke run with ruler.shards: 2: each model's job runs as two shard jobs
    (one prompt each) and a merge, and the merged record's samples (prompts, greedy outputs, scores) and scores are
    the unsharded job's, exactly; so is the table."""
    import re
    import shutil
    import subprocess
    from collections import Counter

    import yaml

    run = smoke_run.parent / f"{smoke_run.name}-ruler-shards"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(smoke_run, run, symlinks=True)
    shutil.rmtree(run / "eval/ruler")  # the copy has no Snakemake metadata: remove what the shards must rebuild
    for f in (run / "tables").glob("table7.*"):
        f.unlink()
    cfg = smoke_config()
    cfg["ruler"]["shards"] = 2
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "table7", "--configfile", str(tmp_path / "shards.yaml"),
           "--config", f"run={run.name}", "--cores", "2"]
    dry = subprocess.run(cmd + ["-n"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    planned = Counter(re.findall(r"^(?:local)?rule (\w+):$", dry.stdout, flags=re.M))
    assert planned == {"ruler_shard": 4, "ruler": 2, "table": 1, "table7": 1}, planned
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for model in ("base", "PI-64/step6"):
        got, want = (json.loads((r / f"eval/ruler/synthetic/tiny/{model}/ruler.json").read_text())
                     for r in (run, smoke_run))
        assert got["shards"] == 2 and len(got["samples"]) == 2
        assert got["samples"] == want["samples"] and got["lengths"] == want["lengths"]
        same = [k for k in ruler.SAME if k != "model"]  # the checkpoint's path is the copy's; its sha256 the same
        assert {k: got[k] for k in same} == {k: want[k] for k in same} and got["downloads"] == {}
        parts = [json.loads((run / f"eval/ruler/synthetic/tiny/{model}/shards/{k}-of-2.json").read_text())
                 for k in (0, 1)]
        assert [len(x["samples"]) for x in parts] == [1, 1]
    assert (run / "tables/table7.md").read_bytes() == (smoke_run / "tables/table7.md").read_bytes()
    shutil.rmtree(run, ignore_errors=True)
