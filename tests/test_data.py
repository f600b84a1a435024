import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from pi_repro import data, fetch, passkey
from pi_repro.io import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def test_proofpile_style_draws_long_documents_and_truncates():
    ids = [f"d{i}" for i in range(20)]
    arrays = [np.arange(10 * i) for i in range(20)]
    a = data.select_eval_docs(ids, arrays, "proofpile", seed=3, num_docs=5, doc_tokens=100)
    b = data.select_eval_docs(ids, arrays, "proofpile", seed=3, num_docs=5, doc_tokens=100)
    assert a[0] == b[0] and len(a[0]) == 5
    assert all(len(x) == 100 for x in a[1])
    assert all(int(i[1:]) >= 10 for i in a[0])
    with pytest.raises(ValueError, match="only 10 test documents"):
        data.select_eval_docs(ids, arrays, "proofpile", seed=3, num_docs=11, doc_tokens=100)


def test_pg19_style_keeps_whole_documents():
    ids = ["b", "a", "c"]
    arrays = [np.arange(5), np.arange(7), np.arange(3)]
    got_ids, got = data.select_eval_docs(ids, arrays, "pg19", seed=0)
    assert got_ids == ["a", "b", "c"] and [len(x) for x in got] == [7, 5, 3]


def test_docs_round_trip(tmp_path):
    ids, arrays = ["x", "y"], [np.array([1, 2, 3]), np.array([4, 5])]
    data.save_docs(tmp_path / "d.npz", ids, arrays, 100)
    got_ids, got = data.load_docs(tmp_path / "d.npz")
    assert got_ids == ids and [list(a) for a in got] == [[1, 2, 3], [4, 5]]


def test_corpus_errors_name_the_line(tmp_path):
    p = tmp_path / "c.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"id": "a", "split": "train", "text": "x"}) + "\n" + '{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"c.jsonl.gz:2"):
        data.read_corpus(p)


def test_checksum_mismatch_fails_loudly(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "split": "train", "text": "x"}\n')
    spec = {"source": "local", "path": str(p), "sha256": "0" * 64}
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch.fetch(spec, tmp_path / "out.jsonl.gz")
    assert not (tmp_path / "out.jsonl.gz").exists()


def test_tokenizer_splits_digits_and_round_trips(tmp_path):
    texts = ["The pass key is 12345. Remember it."] * 50 + ["Lemma foo : forall n, n + 0 = n."] * 50
    data.train_tokenizer(texts, 300, tmp_path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path)
    pieces = tok.tokenize("key 98765")
    digits = [p.strip("Ġ") for p in pieces if p.strip("Ġ").isdigit()]
    assert digits == ["9", "8", "7", "6", "5"]  # one token per digit, as LLaMA's tokenizer does
    assert tok.decode(tok("key 98765", add_special_tokens=False)["input_ids"]) == "key 98765"


def test_passkey_prompt_is_the_papers():
    p = passkey.prompt("12345", 2, 1)
    assert p.startswith(passkey.INTRO) and p.endswith("What is the pass key? The pass key is")
    assert p.count(passkey.FILLER) == 3
    assert "The pass key is 12345. Remember it. 12345 is the pass key." in p


def test_shipped_model_is_verified_before_use(tmp_path):
    import shutil

    from pi_repro.io import sha256_file

    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "SHA256SUMS").write_text(f"{sha256_file(src / 'config.json')}  config.json\n")
    fetch.fetch_model({"source": "local", "path": str(src)}, tmp_path / "ok")
    assert (tmp_path / "ok/config.json").is_file()
    (src / "config.json").write_text('{"tampered": 1}')
    with pytest.raises(ValueError, match="checksum mismatch for .*config.json"):
        fetch.fetch_model({"source": "local", "path": str(src)}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    shutil.rmtree(src)


def test_shipped_base_model_matches_its_checksums():
    from pathlib import Path

    fetch.verify_model_dir(Path(__file__).resolve().parents[1] / "resources/models/mini")


def test_hub_paths_are_pinned_to_the_revision():
    hub = {"id": "hoskinson-center/proof-pile", "revision": "490b980249446f2f3bd2df3a8cf085d0f2de240a",
           "data_files": {"test": "test/proofpile_test.jsonl.gz"}, "splits": {"test": "test"}, "text_field": "text"}
    assert fetch.hub_files(hub, "test") == [
        "hf://datasets/hoskinson-center/proof-pile@490b980249446f2f3bd2df3a8cf085d0f2de240a/test/proofpile_test.jsonl.gz"]
    assert fetch.hub_files(hub, "train") is None
    assert fetch.char_budget(hub, "train", 1000) == 4501 and fetch.char_budget(hub, "test", 1000) is None
    assert fetch.char_budget(dict(hub, subset="all"), "train", 1000) is None


def test_hub_streaming_cuts_the_training_subset_at_the_budget(tmp_path, monkeypatch):
    """The real `datasets` streaming path (json builder), on local files instead of hf:// ones."""
    for split, n in (("train", 50), ("test", 3)):
        with gzip.open(tmp_path / f"{split}.jsonl.gz", "wt") as f:
            for i in range(n):
                doc = {"body": f"{split} document {i} " + "x" * 90, "abstract": f"s{i}", "name": f"{split}{i}"}
                f.write(json.dumps(doc) + "\n")
    monkeypatch.setattr(fetch, "hub_files", lambda hub, split: [str(tmp_path / f"{split}.jsonl.gz")])
    hub = {"id": "local/test", "revision": "0" * 40, "builder": "json", "splits": {"train": "train", "test": "test"},
           "data_files": {"train": "x", "test": "y"}, "text_field": "body", "id_field": "name",
           "summary_field": "abstract",
           "chars_per_token": 4.0}
    info = fetch.fetch_hub(hub, tmp_path / "out.jsonl.gz", train_tokens=250)  # 1000 characters: 10 documents
    docs = data.read_corpus(tmp_path / "out.jsonl.gz")
    assert info["splits"] == {"train": {"documents": 10, "characters": 1070},
                              "test": {"documents": 3, "characters": 318}}
    assert [d["id"] for d in docs if d["split"] == "test"] == ["test0", "test1", "test2"]
    assert docs[0]["summary"] == "s0" and len(info["sha256"]) == 64
    info = fetch.fetch_hub(hub, tmp_path / "eval-only.jsonl.gz", train_tokens=0)  # no fine-tune reads train
    assert set(info["splits"]) == {"test"}


def test_shipped_corpora_match_their_checksums_and_the_manpages_pairs_are_sound():
    """Every shipped corpus has the sha256 of SHA256SUMS; the summarization corpus (Table 6's stand-in, built by
    resources/corpora/build_manpages.py) reads as a corpus, each page with a one-line summary taken out of the
    document, unique ids, and its test split the fixed 1-in-5 by sha1 of the id."""
    import hashlib

    corpora = ROOT / "resources/corpora"
    sums = dict(reversed(line.split("  ")) for line in (corpora / "SHA256SUMS").read_text().splitlines())
    assert {"austen.jsonl.gz", "coq.jsonl.gz", "manpages.jsonl.gz"} <= set(sums)
    for name, digest in sums.items():
        assert sha256_file(corpora / name) == digest, name
    docs = data.read_corpus(corpora / "manpages.jsonl.gz")
    assert len(docs) >= 900 and len({d["id"] for d in docs}) == len(docs)
    for d in docs:
        assert d["summary"].strip() and "\n" not in d["summary"] and len(d["text"].split()) >= 150
        assert not d["text"].startswith("NAME") and "\nNAME\n" not in d["text"]
        test = int(hashlib.sha1(d["id"].encode()).hexdigest(), 16) % 5 == 0
        assert d["split"] == ("test" if test else "train"), d["id"]
    assert 150 <= sum(d["split"] == "test" for d in docs) <= 250


def _random_docs(rng, n, vocab=97):
    return [rng.integers(0, vocab, size=int(k)) for k in rng.integers(1, 400, size=n)]


@pytest.mark.parametrize("vocab", [97, 70000])
def test_packed_tokens_round_trip_memory_mapped(tmp_path, vocab):
    rng = np.random.default_rng(0)
    docs = _random_docs(rng, 30, vocab)
    data.save_packed(tmp_path / "train.npy", docs, vocab, "digest")
    tokens, offsets = data.load_packed(tmp_path / "train.npy")
    assert isinstance(tokens, np.memmap) and tokens.dtype == (np.uint16 if vocab < 65536 else np.uint32)
    assert np.array_equal(np.load(tmp_path / "train.npy"), np.concatenate(docs))  # a plain .npy file
    assert [list(tokens[offsets[i]:offsets[i + 1]]) for i in range(30)] == [list(d) for d in docs]
    with np.load(data.index_path(tmp_path / "train.npy")) as z:
        assert str(z["tokenizer"]) == "digest" and int(z["max_id"]) == max(int(d.max()) for d in docs)
    data.save_packed(tmp_path / "other.npy", docs[:3], vocab)  # an index from another run is refused
    data.index_path(tmp_path / "other.npy").replace(data.index_path(tmp_path / "train.npy"))
    with pytest.raises(ValueError, match="come from different runs"):
        data.load_packed(tmp_path / "train.npy")


def test_doc_stream_is_the_shuffled_concatenation_without_loading_it(tmp_path):
    """Every training rank reads its sequences from the memory-mapped files: the same tokens, in the same order,
    as shuffling the documents of all files with the seed and concatenating them (what training read before)."""
    import random

    from pi_repro import train

    rng = np.random.default_rng(1)
    files = []
    for k in range(3):
        data.save_packed(tmp_path / f"t{k}.npy", _random_docs(rng, 20 + k), 97)
        files.append(tmp_path / f"t{k}.npy")
    arrays = data.load_packed_docs(files)
    random.Random(5).shuffle(arrays)
    whole = np.concatenate(arrays)
    stream = data.DocStream(files, seed=5)
    assert len(stream) == len(whole) and stream.dtype == whole.dtype
    assert np.array_equal(stream[:], whole)
    for a, b in rng.integers(0, len(whole), size=(200, 2)):
        assert np.array_equal(stream[min(a, b):max(a, b)], whole[min(a, b):max(a, b)])
    chunks, reference = train.Chunks(stream, 64), train.Chunks(whole, 64)
    assert len(chunks) == len(reference)
    assert all(torch_equal(chunks[i]["input_ids"], reference[i]["input_ids"]) for i in range(len(chunks)))
    assert not np.array_equal(data.DocStream(files, seed=6)[:], whole)


def torch_equal(a, b):
    return bool((a == b).all()) and a.shape == b.shape


def test_tokenization_streams_a_corpus_larger_than_its_memory_cap(tmp_path):
    """The tokenize job (its script, as the rule runs it) on a corpus whose packed tokens are larger than a
    memory cap: its peak memory exceeds that of a corpus 16 times smaller by less than the cap (memory is the
    batch's, not the corpus's), and the packed file holds every document."""
    import subprocess
    import sys

    texts = [d["text"] for d in data.read_corpus(ROOT / "resources/corpora/austen.jsonl.gz")]
    cap_mb = 16

    def corpus(path, docs):
        with gzip.open(path, "wt", compresslevel=1) as f:
            for i, t in enumerate(docs):
                f.write(json.dumps({"id": f"d{i}", "split": "train", "text": t}) + "\n")
            f.write(json.dumps({"id": "t", "split": "test", "text": texts[0]}) + "\n")

    def peak_rss_mb(path, out):
        script = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True);"
                  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        cmd = [sys.executable, "-c", script, sys.executable, str(ROOT / "workflow/scripts/tokenize_corpus.py"),
               "--corpus", str(path), "--tokenizer", str(ROOT / "resources/models/mini"), "--eval", "null",
               "--seed", "0", "--train", str(out / "train.npy"), "--train-index", str(out / "train.idx.npz"),
               "--eval-out", str(out / "eval.npz"), "--stats", str(out / "stats.json")]
        run = subprocess.run(cmd, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        return int(run.stdout.split()[-1]) / 1024

    big = [t for _ in range(16) for t in texts]  # 64 MB of text, 41 MB of packed tokens
    corpus(tmp_path / "small.jsonl.gz", texts)  # 4 MB: a few batches
    corpus(tmp_path / "big.jsonl.gz", big)
    (tmp_path / "s").mkdir(), (tmp_path / "b").mkdir()
    base, peak = peak_rss_mb(tmp_path / "small.jsonl.gz", tmp_path / "s"), peak_rss_mb(tmp_path / "big.jsonl.gz",
                                                                                       tmp_path / "b")
    tokens, offsets = data.load_packed(tmp_path / "b/train.npy")
    assert tokens.nbytes > cap_mb * 2**20 and len(offsets) == len(big) + 1
    stats = json.loads((tmp_path / "b/stats.json").read_text())
    assert stats["train"]["tokens"] == len(tokens) and stats["test"]["documents"] == 1
    print(f"peak memory: {base:.0f} MB for 4 MB of text, {peak:.0f} MB for 64 MB ({tokens.nbytes / 2**20:.0f} MB of "
          "tokens)")
    assert peak - base < cap_mb, f"tokenization held the corpus: +{peak - base:.0f} MB"
    from pi_repro.modeling import load_tokenizer

    tok = load_tokenizer(ROOT / "resources/models/mini")
    for i in (0, len(big) // 2, len(big) - 1):  # the documents are there, in order
        assert list(tokens[offsets[i]:offsets[i + 1]]) == list(data.encode_docs(tok, [big[i]])[0])


def test_join_books_makes_one_document_per_book_in_chapter_order():
    docs = [{"id": f"{b}/ch{c:02d}", "split": "test", "text": f"{b} {c}"} for b in ("p", "e") for c in (2, 10, 1)]
    books = data.join_books(docs)
    assert [b["id"] for b in books] == ["e", "p"] and books[1]["text"] == "p 1\n\np 2\n\np 10"
