"""Table 6 (pi_repro.summarization): the prompt and its truncation, the loss mask, ROUGE as rouge-score computes
it, seeded and batched generation, the LEAD baseline, the paired bootstrap, the table and finding 7, the config's
checks, and the DAG of `snakemake table6` (default and paper configurations)."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from pi_repro import config as C  # noqa: E402
from pi_repro import kinds, paper, sizing, tables, targets  # noqa: E402
from pi_repro import summarization as S  # noqa: E402

MINI = ROOT / "resources/models/mini"
CORPUS = ROOT / "resources/corpora/manpages.jsonl.gz"
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MINI))


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# -------------------------------------------------------------------------------------------- the examples
def test_loss_mask_covers_exactly_the_summary_tokens_and_the_closing_eos(tok):
    doc = "The ls command lists the files of a directory, sorted by name unless told otherwise. " * 3
    e = S.encode(tok, doc, "list directory contents", window=512, summary_tokens=24)
    summary = enc(tok, " list directory contents") + [tok.eos_token_id]
    scored = [i for i, lab in enumerate(e.labels) if lab != S.IGNORE]
    assert scored == list(range(e.prompt_len, len(e.input_ids)))  # a contiguous block at the end
    assert [e.labels[i] for i in scored] == summary == e.input_ids[e.prompt_len:]
    assert len(e.labels) == len(e.input_ids)
    prompt = [tok.bos_token_id] + enc(tok, S.INTRO) + enc(tok, doc) + enc(tok, S.OUTRO)
    assert e.input_ids[:e.prompt_len] == prompt and e.doc_kept == e.doc_len  # the whole document fits
    # the generation prompt is the same tokens without the summary, and scores nothing
    g = S.encode(tok, doc, None, window=512, summary_tokens=24)
    assert g.input_ids == prompt and set(g.labels) == {S.IGNORE}


def test_truncation_keeps_the_documents_first_tokens_and_the_whole_instruction_and_question(tok):
    doc = " ".join(f"word{i}" for i in range(400))
    d = enc(tok, doc)
    a, b = enc(tok, S.INTRO), enc(tok, S.OUTRO)
    for window in (128, 256):
        e = S.encode(tok, doc, "a long summary " * 20, window=window, summary_tokens=24)
        keep = window - 1 - len(a) - len(b) - 24 - 1
        assert e.doc_kept == keep < len(d) == e.doc_len
        assert e.input_ids[:e.prompt_len] == [tok.bos_token_id] + a + d[:keep] + b  # first tokens, both texts whole
        assert len(e.input_ids) == window  # summary cut to 24 tokens + EOS: exactly the window
        assert sum(lab != S.IGNORE for lab in e.labels) == 25
    capped = S.encode(tok, doc, "x", window=512, summary_tokens=24, doc_tokens=50)  # the paper's 15000-token cap
    assert capped.doc_kept == 50 and capped.input_ids[:capped.prompt_len] == [tok.bos_token_id] + a + d[:50] + b
    with pytest.raises(ValueError, match="leave no room for the document"):
        S.encode(tok, doc, "x", window=len(a) + len(b) + 10, summary_tokens=24)


def test_pad_collator_masks_padding_out_of_attention_and_loss():
    batch = S.PadCollator(pad_id=1)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                     {"input_ids": [5], "labels": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_documents_need_a_summary_and_the_subset_is_seeded(tmp_path):
    test = S.documents(CORPUS, "test")
    assert len(test) == 188 and all(d["summary"].strip() for d in test)
    sub = S.documents(CORPUS, "test", limit=20, seed=3)
    assert len(sub) == 20 and sub == S.documents(CORPUS, "test", limit=20, seed=3)
    assert [d["id"] for d in sub] != [d["id"] for d in S.documents(CORPUS, "test", limit=20, seed=4)]
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"id": "a", "split": "test", "text": "some text"}\n')
    with pytest.raises(ValueError, match="no summary"):
        S.documents(bad, "test")


# ------------------------------------------------------------------------------------------------- scoring
def test_rouge_of_known_strings_is_rouge_scores_own():
    from rouge_score import rouge_scorer

    preds = ["the cat sat on the mat", "list the directory contents", "", "running dogs"]
    refs = ["the cat sat", "list directory contents", "copy files", "a dog runs"]
    got = S.rouge(preds, refs)
    own = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for g, p, r in zip(got, preds, refs):
        s = own.score(r, p)
        assert g == {t: s[t].fmeasure for t in ("rouge1", "rouge2", "rougeL")}
    assert got[0]["rouge1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 3/6, recall 3/3
    assert got[2] == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert got[3]["rouge1"] == pytest.approx(0.8)  # stemming: running/runs, dogs/dog match: P 2/2, R 2/3
    assert S.corpus_scores(got)["rouge1"] == pytest.approx(100 * np.mean([g["rouge1"] for g in got]))
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        S.rouge(["a", "b"], ["a"])


def test_lead_is_the_first_sentence_of_the_lead_section():
    page = "SYNOPSIS\nls [OPTION]... [FILE]...\n\nDESCRIPTION\nList information about the FILEs. Sort entries.\n"
    assert S.lead(page, "DESCRIPTION") == "List information about the FILEs."
    assert S.lead(page, None) == "SYNOPSIS ls [OPTION]..."  # no section asked: the document's first sentence
    assert S.lead("No sections here! Second.", "DESCRIPTION") == "No sections here!"
    assert S.lead("no full stop at all", None) == "no full stop at all"


def test_paired_bootstrap_interval():
    a, b = [3.0, 5.0, 7.0, 9.0], [1.0, 2.0, 3.0, 4.0]
    r = S.paired_bootstrap(a, b, n=2000, seed=0)
    assert r["mean"] == pytest.approx(3.5) and r["ci95"][0] <= 3.5 <= r["ci95"][1]
    assert r["ci95"][0] >= 2.0 and r["ci95"][1] <= 5.0  # within the range of the paired differences
    assert S.paired_bootstrap(a, b, n=2000, seed=0) == r  # seeded
    assert S.paired_bootstrap(a, a, n=100)["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="equally long"):
        S.paired_bootstrap([1.0], [1.0, 2.0])


# ---------------------------------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def mini():
    from pi_repro import modeling

    model = modeling.load_model(MINI)
    model.eval()
    return model


def test_generation_is_seeded_and_batching_does_not_change_greedy_output(mini, tok):
    docs = S.documents(CORPUS, "test")[:6]
    prompts = [S.encode(tok, d["text"][:40 * (i + 1)], None, 128, 16).input_ids for i, d in enumerate(docs)]
    assert len({len(p) for p in prompts}) > 1  # unequal lengths: the batch is left-padded
    one = S.generate(mini, tok, prompts, 8, 0.5, 0.95, seed=5, batch_size=4)
    assert one == S.generate(mini, tok, prompts, 8, 0.5, 0.95, seed=5, batch_size=4)  # same seed: same summaries
    assert one != S.generate(mini, tok, prompts, 8, 0.5, 0.95, seed=6, batch_size=4)
    greedy = S.generate(mini, tok, prompts, 8, 0.0, 1.0, seed=0, batch_size=6)
    alone = [S.generate(mini, tok, [p], 8, 0.0, 1.0, seed=0, batch_size=1)[0] for p in prompts]
    assert greedy == alone and all(isinstance(s, str) for s in greedy)


# ---------------------------------------------------------------------------------- the table and finding 7
def record(method, ctx, scores_per_doc, window, size="mini"):
    ids = [f"d{i}" for i in range(len(scores_per_doc))]
    per_doc = [{"id": i, "rouge1": s, "rouge2": s / 2, "rougeL": s / 2} for i, s in zip(ids, scores_per_doc)]
    rec = {"task": "rouge", "dataset": "manpages", "size": size, "method": method, "ctx": ctx, "step": 0,
           "window": window, "n_docs": len(ids), "per_doc": per_doc, "scores": S.corpus_scores(per_doc),
           "generate": {"temperature": 0.5, "top_p": 0.95, "max_new_tokens": 24}, "bootstrap": 500}
    if method == "LEAD":
        rec = {k: v for k, v in rec.items() if k not in ("size", "ctx", "step", "window")}
        rec["baseline"] = "LEAD"
    return rec


def table6(pi, none=(0.1, 0.2, 0.3, 0.2), quoted=None):
    recs = [record("None", 128, list(none), 128), record("PI", 256, list(pi), 256),
            record("CT", 256, [0.1, 0.2, 0.3, 0.2], 128), record("LEAD", None, [0.3] * 4, None)]
    return tables.summarization_table(recs, quoted)


def test_table6_rows_paired_differences_and_quoted_rows():
    quoted = [c for c in paper.load_cells(ROOT / "resources/paper/tables.csv") if c["table"] == "table6"]
    t = table6([0.2, 0.3, 0.4, 0.3], quoted=quoted)
    ours = t[t["source"] == "this run"]
    assert list(ours["method"]) == ["None", "PI", "CT", "LEAD"]
    pi = ours[ours["method"] == "PI"].iloc[0]
    assert pi["ROUGE-1"] == pytest.approx(30.0) and pi["ROUGE-1 vs None"] == pytest.approx(10.0)
    assert pi["ROUGE-1 vs None lo"] == pytest.approx(10.0) and pi["ROUGE-2 vs None"] == pytest.approx(5.0)
    assert pd.isna(ours[ours["method"] == "None"].iloc[0]["ROUGE-1 vs None"])
    q = t[t["source"] == "quoted (paper)"]
    assert {(r["method"], r["size"]): (r["ROUGE-1"], r["ROUGE-2"], r["ROUGE-L"]) for _, r in q.iterrows()} == {
        ("CoLT5", "Base"): (58.7, 29.6, 31.4), ("CoLT5", "XL"): (61.3, 32.2, 33.8), ("PI", "7B"): (60.0, 28.0, 29.5)}
    shown = tables.summarization_display(t)
    assert list(shown["Model"]) == ["mini None", "mini PI (256)", "mini CT (control) (256)", "LEAD (first sentence)",
                                    "7B PI (16384)", "CoLT5 Base", "CoLT5 XL"]
    assert shown.iloc[1]["ROUGE-L vs None (95% CI)"] == "+5.0 [+5.0, +5.0]"
    assert "| 7B PI (16384)" in tables.markdown(shown) and "24.0" not in tables.markdown(shown)
    with pytest.raises(ValueError, match="2 ROUGE records for the row"):
        tables.summarization_table([record("None", 128, [0.1], 128), record("None", 128, [0.2], 128)])


def test_paper_side_by_side_reads_our_row_never_the_quoted_one(tmp_path):
    quoted = [c for c in paper.load_cells(ROOT / "resources/paper/tables.csv") if c["table"] == "table6"]
    recs = [record("PI", 16384, [0.59, 0.61], 16384, size="7B")]
    t = tables.summarization_table(recs, quoted)
    t.to_csv(tmp_path / "table6.csv", index=False)
    side = [r for r in paper.side_by_side(PAPER, quoted, {"table6": tmp_path / "table6.csv"}) if r["table"] == "table6"]
    assert {(r["column"], r["status"]) for r in side} == {("ROUGE-1", "PASS"), ("ROUGE-2", "FAIL"),
                                                          ("ROUGE-L", "PASS")}  # ours: 60.0, 30.0, 30.0
    assert [r["ours"] for r in side if r["column"] == "ROUGE-2"] == [pytest.approx(30.0)]
    assert not any(paper.other_work(r) for r in side)  # CoLT5's cells are quoted, never judged


def test_finding_7_passes_fails_and_is_na_with_its_numbers():
    def check(t):
        res = kinds.check_findings({"Table 6": {"kind": "summarization", "frame": t}}, 128)
        return [r for r in res if r["finding"] == "7"]

    better = check(table6([0.2, 0.3, 0.4, 0.3]))
    assert [r["status"] for r in better] == ["PASS"]
    nums = better[0]["numbers"]
    assert any(k.startswith("PI-256 - None ROUGE-L (95% CI") for k in nums) and "LEAD ROUGE-L" in nums
    assert "CT-256 - None ROUGE-1" in nums
    assert [r["status"] for r in check(table6([0.1, 0.2, 0.3, 0.1]))] == ["FAIL"]  # one document worse
    t = table6([0.2, 0.3, 0.4, 0.3])
    assert check(t[t["method"] != "None"])[0]["status"] == "n/a"
    assert check(t[t["method"] != "PI"])[0]["reason"] == "the table has no PI row"
    assert [r["reason"] for r in kinds.check_findings({}, 128) if r["finding"] == "7"] == [
        "the config has no table of kind summarization"]


# --------------------------------------------------------------------------------------------- the config
def test_summarization_config_errors_name_the_key():
    cfg = copy.deepcopy(DEFAULT)
    cfg["tables"]["table6"]["rows"].append({"size": "mini", "method": "PI", "ctx": 1024})
    with pytest.raises(targets.ConfigError, match=r"tables\.table6\.rows\[3\]: no extension"):
        C.validate(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["tables"]["table6"]["dataset"] = "manpage"
    with pytest.raises(targets.ConfigError, match=r"tables\.table6\.dataset: unknown dataset 'manpage'"):
        C.validate(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["tables"]["table6"]["quoted"] = "resources/paper/none.csv"
    with pytest.raises(targets.ConfigError, match=r"tables\.table6\.quoted: resources/paper/none\.csv: no such file"):
        C.validate(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["summarization"]["generate"]["top_p"] = 1.5
    with pytest.raises(targets.ConfigError, match=r"summarization\.generate\.top_p"):
        C.validate(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["summarization"]["epoch"] = 2
    with pytest.raises(targets.ConfigError, match=r"did you mean 'epoch' -> 'epochs'"):
        C.validate(cfg)
    cfg = copy.deepcopy(PAPER)
    cfg["datasets"]["govreport"]["hub"]["splits"] = {"train": "train"}
    with pytest.raises(targets.ConfigError, match=r"tables\.table6\.dataset: dataset 'govreport' has no test split"):
        C.validate(cfg)
    cfg = copy.deepcopy(PAPER)
    cfg["summarization"]["global_batch"] = 64  # the 16-node PI-16384 job has 128 ranks
    with pytest.raises(targets.ConfigError,
                       match=r"tables\.table6\.rows\[0\]: summarization: global batch 64 .* 128 ranks"):
        C.validate(cfg)


def dry_run(target, *config):
    p = subprocess.run([sys.executable, "-m", "snakemake", target, *config, "-n", "-p"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    return out, counts


def test_snakemake_table6_builds_only_its_upstream():
    _, counts = dry_run("table6", "--forceall")
    # the manual pages and, for the CT and PI fine-tunes it starts from, their data; no perplexity, passkey, benchmark
    assert counts == {"fetch_dataset": 3, "rouge_lead": 1, "summarize_finetune": 3, "summarize": 3, "rouge": 3,
                      "finetune": 2, "init_extension": 2, "base_model": 1, "tokenize": 2, "table": 1, "table6": 1,
                      "total": 22}


def test_paper_dry_run_has_one_summarization_finetune_generation_and_scoring_of_7b_pi_16384():
    out, counts = dry_run("table6", "--configfile", "config/paper.yaml")
    assert (counts["summarize_finetune"], counts["summarize"], counts["rouge"], counts["rouge_lead"]) == (1, 1, 1, 1)
    assert "perplexity.py" not in out and "passkey.py" not in out
    block = out[out.index("rule summarize_finetune"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
    ext = targets.find_extension(PAPER, "7B", "PI", 16384)
    job = sizing.train_job(PAPER, ext)  # the resources of the 7B PI-16384 fine-tune it starts from
    assert (int(res["nodes"]), res["mpi"], int(res["gpus_total"])) == (job["nodes"], "srun", 128)
    assert "launch.py --nodes 16 --gpus-per-node 8 --procs-per-node 8 --mode srun" in block
    assert "--init results/paper/models/7B/PI-16384/step1000 --method PI --ctx 16384 --base-window 2048" in block
    assert '"doc_tokens": 15000' in block and '"summary_tokens": 1000' in block and '"epochs": 10' in block
    assert '"temperature": 0.5' in block and '"top_p": 0.95' in block and '"max_new_tokens": 1000' in block
    assert '"deepspeed": "config/deepspeed/zero3-bf16.json"' in block and '"lr": 2e-05' in block
    gen = out[out.index("rule summarize:"):]
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", gen).group(1).split(", "))
    assert (res["gpu"], res["nodes"]) == (str(PAPER["sizes"]["7B"]["resources"]["eval_gpus"]), "1")
