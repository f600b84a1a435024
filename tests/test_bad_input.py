"""Bad input fails in seconds with a message naming the key or the file: misspelt keys at any depth, impossible
values in every section, broken corpora, token files of another tokenizer, checkpoints without their tokenizer.
(More cases: test_config.py, test_data.py, test_checkpoint_gate.py, test_safety.py; docs/architecture.md,
"Bad input".)"""
import copy
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import save_word_tokenizer, smoke_config
from pi_repro import config as C
from pi_repro import (
    data,
    modeling,
    targets,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def refused(mutate, match: str, base: dict = DEFAULT):
    cfg = copy.deepcopy(base)
    mutate(cfg)
    with pytest.raises(targets.ConfigError) as e:
        C.validate(cfg)
    assert re.search(match, str(e.value)), str(e.value)
    return str(e.value)


def setter(path: str, value):
    """A mutation setting ``path`` (dots; [i] for list items) to ``value``."""
    def mutate(cfg):
        keys = re.findall(r"[^.\[\]]+", path)
        node = cfg
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        last = keys[-1]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


@pytest.mark.parametrize("path", [
    "train.warmup_step", "perplexity.strides", "passkey.num_ks", "benchmarks.batchsize", "theory.seeds",
    "tables.table1.datset", "extensions[0].chekpoints", "sizes.mini.resources.train_gpu", "datasets.pg19.eval.stlye",
    "audit.determinism.job", "benchmarks.tasks.cloze_pg19.build.distractor",
])
def test_a_misspelt_key_is_named_at_any_depth(path):
    msg = refused(setter(path, 1), r"unknown key")
    assert "did you mean" in msg  # each of these is one edit away from a real key
    where = path.rsplit(".", 1)[0] if "." in path else ""
    assert where.replace("[", ".").replace("]", "").split(".")[0] in msg


@pytest.mark.parametrize("path, value, match", [
    ("passkey.threshold", 1.5, r"passkey\.threshold"),
    ("passkey.num_k", 0, r"passkey\.num_k"),
    ("benchmarks.batch_size", 0, r"benchmarks\.batch_size"),
    ("benchmarks.tasks.cloze_pg19.build.dataset", "pg91", r"benchmarks\.tasks\.cloze_pg19.*pg91"),
    ("train.micro_batch", "8", r"train\.micro_batch"),
    ("train.schedule", "step", r"train\.schedule"),
    ("extensions[0].steps", -5, r"extensions\.0\.steps|extensions\[0\]\.steps"),
    ("tables.table4.rows[0].method", "XX", r"tables\.table4\.rows"),
    ("tables.table5.rows[0].size", "huge", r"tables\.table5\.rows\[0\]\.size"),
    ("theory.d", 7, r"theory\.d"),
    ("audit.determinism.tolerance", {"table": -1}, r"audit\.determinism\.tolerance"),
    ("tables.table1.tolerance", {"relative": 0.03, "absolute": 1}, r"tables\.table1\.tolerance"),
    ("perplexity.batch_size", 0, r"perplexity\.batch_size"),
    ("perplexity.shards", 0, r"perplexity\.shards"),
    ("perplexity.shard_hours", 0, r"perplexity\.shard_hours"),
])
def test_an_impossible_value_is_named_in_every_section(path, value, match):
    refused(setter(path, value), match)


def test_perplexity_shards_are_sized_one_way_and_within_the_eval_runtime():
    refused(lambda c: c["perplexity"].update(shards=2, shard_hours=4), r"perplexity\.shards: set either shards")
    # the default eval runtime is 30 min: a 2 h shard could not finish in its job
    refused(lambda c: c["perplexity"].update(shard_hours=2), r"perplexity\.shard_hours: 2 h is longer than the 0\.5 h")


def test_a_duplicated_extension_is_refused():
    refused(lambda c: c["extensions"].append(copy.deepcopy(c["extensions"][0])), r"extensions\[\d\]")


# ------------------------------------------------------------------------------------------------- data
def write_corpus(path: Path, docs: list[dict]) -> Path:
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    return path


DOCS = [{"id": f"d{i}", "split": "train", "text": "word " * 2000} for i in range(20)]


def test_a_truncated_corpus_is_named(tmp_path):
    p = write_corpus(tmp_path / "c.jsonl.gz", DOCS)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])  # a download cut mid-stream
    with pytest.raises(ValueError, match=r"c\.jsonl\.gz: unreadable after line \d+ .*truncated or corrupt"):
        data.read_corpus(p)


def test_a_corpus_that_is_not_gzip_or_empty_or_missing_is_named(tmp_path):
    p = tmp_path / "c.jsonl.gz"
    p.write_text('{"id": "a", "split": "train", "text": "x"}\n')  # named .gz, written plain
    with pytest.raises(ValueError, match=r"c\.jsonl\.gz: unreadable"):
        data.read_corpus(p)
    write_corpus(p, [])
    with pytest.raises(ValueError, match=r"c\.jsonl\.gz: no documents"):
        data.read_corpus(p)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl\.gz: no such corpus file"):
        data.read_corpus(tmp_path / "nope.jsonl.gz")


def test_a_record_without_its_text_field_is_named(tmp_path):
    p = write_corpus(tmp_path / "c.jsonl.gz", DOCS[:3] + [{"id": "x", "split": "test", "body": "..."}])
    with pytest.raises(ValueError, match=r"c\.jsonl\.gz:4: a document needs id, text and split"):
        data.read_corpus(p)


def test_tokens_of_another_tokenizer_are_refused_before_the_model_loads(tmp_path):
    """Same vocabulary size, other tokens: refused by the tokenizer's digest recorded in the token file; ids past
    the model's vocabulary: refused too (a token file written before digests were recorded)."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    save_word_tokenizer(ours, 97)
    save_word_tokenizer(theirs, 97)
    t = modeling.load_tokenizer(theirs)
    t.add_tokens(["extra"])  # another vocabulary
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 90, 50)]
    data.save_docs(tmp_path / "eval.npz", ["a"], arrays, 97, data.tokenizer_digest(t))
    tok = modeling.load_tokenizer(ours)
    with pytest.raises(ValueError, match=r"eval\.npz was tokenized by another tokenizer .* than the one of .*ours"):
        data.check_tokenizer([tmp_path / "eval.npz"], tok, ours)
    data.save_docs(tmp_path / "eval.npz", ["a"], arrays, 97, data.tokenizer_digest(tok))
    data.check_tokenizer([tmp_path / "eval.npz"], tok, ours)  # the model's own: accepted
    data.save_docs(tmp_path / "old.npz", ["a"], [np.array([5, 300])], 1000)  # no digest, id 300 >= 97
    with pytest.raises(ValueError, match=r"old\.npz holds token id 300, beyond the vocabulary of .*ours \(97 tokens\)"):
        data.check_tokenizer([tmp_path / "old.npz"], tok, ours)
    # packed training tokens: their index records the tokenizer and the largest id (the tokens are never read)
    data.save_packed(tmp_path / "train.npy", [np.array([5, 300])], 97, data.tokenizer_digest(tok))
    with pytest.raises(ValueError, match=r"train\.npy holds token id 300"):
        data.check_tokenizer([tmp_path / "train.npy"], tok, ours)
    data.save_packed(tmp_path / "train.npy", [np.array([5, 30])], 97, data.tokenizer_digest(t))
    with pytest.raises(ValueError, match=r"train\.npy was tokenized by another tokenizer"):
        data.check_tokenizer([tmp_path / "train.npy"], tok, ours)


def test_a_missing_model_folder_or_tokenizer_is_named(tmp_path, tiny_llama):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such model folder"):
        modeling.load_tokenizer(tmp_path / "nowhere")
    tiny_llama.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match=r"ckpt: no tokenizer"):
        modeling.load_tokenizer(tmp_path / "ckpt")


@pytest.mark.slow
def test_a_second_run_on_the_same_results_is_refused_while_the_first_runs(tmp_path):
    """Two `snakemake` processes on the same run folder: the second stops at once with Snakemake's lock message
    (its outputs overlap the first's), and the first completes undisturbed."""
    import subprocess
    import sys
    import time

    cfg = smoke_config()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(cfg, run="lock-test")))
    import shutil

    shutil.rmtree(ROOT / "results/lock-test", ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "table1", "--configfile", str(path), "--cores", "1"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = ROOT / ".snakemake/locks"
    deadline = time.time() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = second.stdout + second.stderr
    assert second.returncode != 0 and "Directory cannot be locked" in out, out[-3000:]
    assert first.wait(timeout=600) == 0, first.stdout.read()[-3000:]
    assert (ROOT / "results/lock-test/tables/table1.csv").is_file()


def test_check_config_names_the_line_of_a_yaml_syntax_error(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("run: x\nseed: [1, 2\nbase_window: 128\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(dict(DEFAULT, train=dict(DEFAULT["train"], warmup_step=3))))
    p = subprocess.run([sys.executable, "workflow/scripts/check_config.py", str(bad), str(typo),
                        "config/paper.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1
    assert re.search(r"bad\.yaml:3:\d+: YAML syntax error", p.stderr), p.stderr
    assert "typo.yaml: config error at train: unknown key" in p.stderr and "paper.yaml" not in p.stderr
    ok = subprocess.run([sys.executable, "workflow/scripts/check_config.py", "config/config.yaml"], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "valid"


@pytest.mark.slow
@pytest.mark.parametrize("target, victim", [("eval/ppl/pg19/tiny/base/ppl.json", "ppl.json"),
                                            ("tables/table1.csv", "table1.md")])
def test_a_job_killed_while_writing_leaves_nothing_taken_for_a_result(tmp_path, target, victim):
    """A perplexity job and a table job SIGKILLed after writing an output and before renaming it into place (fault
    injection at the worst moment): Snakemake reports the job failed, no output of it exists under its name (only
    a hidden temporary, which no table, audit or rerun reads), and the rerun completes."""
    import os
    import subprocess
    import sys

    from pi_repro.io import KILL_ENV

    cfg = smoke_config()
    path = tmp_path / "c.yaml"
    run = f"kill-{victim.split('.')[0]}"
    path.write_text(yaml.safe_dump(dict(cfg, run=run)))
    import shutil

    out = ROOT / "results" / run
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", f"results/{run}/{target}", "--configfile", str(path), "--cores", "2"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, **{KILL_ENV: victim}))
    assert p.returncode != 0 and "Error in rule" in p.stdout + p.stderr
    written = out / target
    assert not written.exists() and not (written.parent / victim).exists()
    assert any(f.name.startswith(f".{victim}.") for f in written.parent.iterdir())  # the hidden temporary
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert written.is_file()
