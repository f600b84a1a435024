"""The passkey protocol (paper, Section 3.3): prompts with exact k, the effective-window rule, the pretraining
documents, and the shipped base model's retrieval skill within its own window."""
import random
from pathlib import Path

import numpy as np
import pytest

from pi_repro import modeling, passkey, pretrain

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "resources" / "models" / "mini"


@pytest.fixture(scope="module")
def tok():
    return modeling.load_tokenizer(MINI)


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("intro", [True, False])
def test_trial_is_the_papers_prompt_and_k_counts_from_the_needle(tok, intro):
    t = passkey.make_trial(tok, "12345", 2, 3, intro)
    assert t.ids[0] == tok.bos_token_id
    text = tok.decode(t.ids[1:])
    want = passkey.prompt("12345", 2, 3) if intro else passkey.prompt("12345", 2, 3)[len(passkey.INTRO) + 1:]
    assert text.lstrip() == want  # without the intro, the first filler keeps its leading space
    tail = tok.decode(t.ids[-t.k:])
    assert tail.lstrip().startswith(passkey.needle("12345")) and tail.endswith(passkey.QUESTION)
    # k grows by one filler sentence per filler after the needle, and not with filler before it
    filler = len(enc(tok, " " + passkey.FILLER))
    assert passkey.make_trial(tok, "12345", 2, 4, intro).k == t.k + filler
    assert passkey.make_trial(tok, "12345", 5, 3, intro).k == t.k


def test_trial_for_fills_up_to_the_length_and_approaches_k(tok):
    for length in (128, 256, 512):
        for k in passkey.k_grid(length, 8):
            t = passkey.trial_for(tok, "54321", k, length)
            assert len(t.ids) <= length
            assert len(t.ids) > length - len(enc(tok, " " + passkey.FILLER))  # no room left for another filler
    near = passkey.trial_for(tok, "54321", 300, 512)
    assert abs(near.k - 300) <= len(enc(tok, " " + passkey.FILLER)) / 2
    with pytest.raises(ValueError, match="too short"):
        passkey.trial_for(tok, "54321", 10, 40)


def test_k_grid_is_evenly_spaced_over_the_window():
    assert passkey.k_grid(8192) == [256 * i for i in range(1, 33)]
    assert passkey.k_grid(128, 4) == [32, 64, 96, 128]


def test_k_max_is_the_last_k_before_the_first_failure():
    rows = [{"k": k, "accuracy": a} for k, a in [(100, 1.0), (200, 0.2), (300, 0.1), (400, 1.0)]]
    assert passkey.k_max(rows) == 200
    assert passkey.k_max(rows[::-1]) == 200  # order of rows does not matter
    assert passkey.k_max([{"k": 100, "accuracy": 0.0}]) == 0
    assert passkey.k_max([{"k": 100, "accuracy": 0.3}], threshold=0.5) == 0


def test_pretraining_documents_vary_the_distance_over_the_window(tok):
    rng = random.Random(0)
    q = enc(tok, " " + passkey.QUESTION)
    distances = []
    for _ in range(200):
        ids = passkey.training_ids(tok, rng, 128)
        assert len(ids) <= 128 and ids[0] == tok.bos_token_id
        text = tok.decode(ids)
        key = text.rsplit(" ", 1)[1].rstrip(".")
        assert key.isdigit() and passkey.needle(key) in text and text.endswith(f"{passkey.QUESTION} {key}.")
        needle_at = next(i for i in range(len(ids))
                         if tok.decode(ids[i:]).lstrip().startswith("The pass key is " + key))
        q_end = next(i for i in range(len(ids), 0, -1) if ids[i - len(q):i] == q)
        distances.append(q_end - needle_at)
    assert min(distances) <= 45 and max(distances) >= 110  # needle-to-question distance covers most of L


def test_varied_mixture_keeps_passkey_documents_whole(tok):
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, len(tok), size=n) for n in rng.integers(50, 400, size=60)]
    import tempfile

    from pi_repro import data

    with tempfile.TemporaryDirectory() as d:
        data.save_packed(f"{d}/train.npy", [np.concatenate([[tok.bos_token_id], x]) for x in docs], len(tok))
        seqs = pretrain.mixture([f"{d}/train.npy"], tok, 128, 0.25, seed=1, passkey_docs="varied").reshape(-1, 128)
    q = enc(tok, " " + passkey.QUESTION)
    with_pk = [s for s in seqs if any(list(s[i:i + len(q)]) == q for i in range(128 - len(q)))]
    corpus_seqs = sum(len(x) + 1 for x in docs) // 128
    assert len(with_pk) == round(0.25 / 0.75 * corpus_seqs)
    for s in with_pk:  # each passkey document starts its sequence, so the needle is never cut off
        assert s[0] == tok.bos_token_id and "The pass key is" in tok.decode(s[:100])


def test_paper_mixture_packs_the_papers_prompt_with_its_answer(tok, tmp_path):
    rng = np.random.default_rng(0)
    docs = [np.concatenate([[tok.bos_token_id], rng.integers(2, len(tok), size=n)]) for n in rng.integers(50, 400, 40)]
    from pi_repro import data

    data.save_packed(tmp_path / "train.npy", docs, len(tok))
    stream = pretrain.mixture([str(tmp_path / "train.npy")], tok, 256, 0.2, seed=3)
    text = tok.decode(stream)
    n_pk = text.count(passkey.INTRO)
    pk_tokens = n_pk * len(passkey.make_trial(tok, "12345", 0, 0).ids)
    assert n_pk > 0 and 0.1 < pk_tokens / len(stream) < 0.3  # about the configured fraction of all tokens
    for chunk in text.split(passkey.INTRO)[1:]:
        prompt, answer = chunk.split(passkey.QUESTION, 1)
        key = prompt.split("The pass key is ", 1)[1][:5]
        assert answer.startswith(f" {key}.") and set(prompt.replace(passkey.FILLER, "")) - set(" .") <= set(
            passkey.needle(key))
    with pytest.raises(ValueError, match="unknown passkey_docs"):
        pretrain.mixture([str(tmp_path / "train.npy")], tok, 256, 0.2, seed=3, passkey_docs="other")


def test_shipped_base_model_retrieves_the_passkey_at_every_distance_within_its_window(tok):
    """The shipped base model has the retrieval skill Table 4 measures, within its own window L, at every distance
    from the needle to the question that prompts of L tokens allow: filler comes in whole sentences (35 tokens), so
    the paper's 32 targets of k over L = 128 reach three distinct k without the intro (42, 77, 112) and one with it."""
    model = modeling.load_model(MINI).eval()
    L = model.config.max_position_embeddings
    rows = []
    for intro in (False, True):
        ks = sorted({passkey.trial_for(tok, "12345", k, L, intro).k for k in passkey.k_grid(L)})
        rows += passkey.accuracy(model, tok, L, ks, trials=40, seed=0, intro=intro)
    assert [(r["k"], r["k_actual"]) for r in rows] == [(42, 42), (77, 77), (112, 112), (42, 42)], rows
    # Observed, 40 trials (seeds 0-4): k = 42: 39-40, k = 77: 37-40, k = 112: 33-37 (seed 0: 40, 40, 33; with the
    # intro 40). The bound, 24 of 40, leaves a margin of 9 trials below the worst observed.
    assert all(r["correct"] >= 24 for r in rows), rows


def llama_style_tokenizer(prepend_scheme: str):
    """A LLaMA-style SentencePiece BPE built offline (the paper's models use one; the hub is not reachable here):
    word-bounded pieces with "▁" for spaces (Metaspace), byte fallback, <s> first; trained on the shipped corpus."""
    import gzip
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    texts = [json.loads(line)["text"] for line in gzip.open(ROOT / "resources/corpora/austen.jsonl.gz", "rt")][:50]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=True)
    special = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=800, special_tokens=special))
    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("which", ["project", "llama-first", "llama-always"])
@pytest.mark.parametrize("intro", [True, False])
def test_segments_tokenized_apart_are_the_whole_prompts_tokens(tok, which, intro):
    """k is counted on separately tokenized segments; that is exact only if they concatenate to the tokens of the
    whole prompt: checked with the project's byte-level BPE and a LLaMA-style SentencePiece tokenizer."""
    t = tok if which == "project" else llama_style_tokenizer(which.split("-")[1])
    trial = passkey.make_trial(t, "40721", 3, 2, intro)
    text = passkey.prompt("40721", 3, 2)
    text = text if intro else text[len(passkey.INTRO):]  # without the intro the first filler keeps its space
    assert trial.ids == [t.bos_token_id] + t(text, add_special_tokens=False)["input_ids"]


# --- Table 4's protocol: prompts that fill the window, exact k at token granularity ----------------------------

def test_prompts_fill_the_window_less_the_answer_and_k_is_exact(tok):
    filler = enc(tok, " " + passkey.FILLER)
    for window, intro in ((128, False), (256, True), (512, False)):
        lay = passkey.layout(tok, window, intro)
        answer = max(len(enc(tok, f" {k}")) for k in ("10000", "55555", "99999"))
        assert lay.prompt_len + answer + 1 <= window  # the key and one more token are generated inside the window
        ks = passkey.k_values(lay, 32)
        assert len(set(ks)) == 32 and ks == sorted(ks) and ks[-1] == lay.k_hi and ks[0] > lay.k_lo
        for k in (ks[0], ks[13], ks[-1], lay.k_lo):
            t = passkey.trial_at(tok, "40721", k, lay.prompt_len, intro)
            assert len(t.ids) == lay.prompt_len and t.k == k
            tail = tok.decode(t.ids[-k:])
            assert tail.lstrip().startswith(passkey.needle("40721")) and tail.endswith(passkey.QUESTION)
            head = len(passkey.make_trial(tok, "40721", 0, 0, intro).ids) - len(passkey.make_trial(
                tok, "40721", 0, 0, intro).ids[-passkey.make_trial(tok, "40721", 0, 0, intro).k:])
            before = t.ids[head:len(t.ids) - k]
            # the filler before the needle ends with a whole sentence, the filler after it starts with one
            assert not before or before == (filler * (len(before) // len(filler) + 1))[-len(before):]
            start = len(t.ids) - k + len(enc(tok, " " + passkey.needle("40721")))
            after = t.ids[start:-len(enc(tok, " " + passkey.QUESTION))]
            assert after == (filler * (len(after) // len(filler) + 1))[:len(after)]
    with pytest.raises(ValueError, match="not possible"):
        passkey.trial_at(tok, "40721", lay.k_lo - 10, lay.prompt_len)


def test_the_default_window_needs_the_prompt_without_its_intro(tok):
    """At L = 128 the paper's intro leaves fewer than 32 distinct k: a clear error naming the setting."""
    assert len(passkey.k_values(passkey.layout(tok, 128, intro=False))) == 32
    with pytest.raises(ValueError, match="passkey.num_k"):
        passkey.k_values(passkey.layout(tok, 128, intro=True))


def test_wilson_interval():
    assert passkey.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert passkey.wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert passkey.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert passkey.wilson(0, 0) == (0.0, 1.0)


@pytest.fixture(scope="module")
def mini():
    return modeling.load_model(MINI).eval()


def test_evaluation_retrieves_within_L_fails_past_it_and_reruns_identically(tok, mini):
    """Table 4's protocol on the shipped base model: within its window every k up to the largest is retrieved
    (k_max = the largest k tested), at 2L nothing is (extrapolation); every trial is recorded; the same seed asks
    the same prompts and gets the same answers, another seed other keys."""
    L = mini.config.max_position_embeddings
    at_l = passkey.evaluate(mini, tok, L, n_k=32, trials=10, seed=3, intro=False, batch_size=32)
    assert at_l["k_max"] == at_l["k_top"] == passkey.layout(tok, L, False).k_hi
    assert len(at_l["trials"]) == 320 and {t["k"] for t in at_l["trials"]} == {r["k"] for r in at_l["per_k"]}
    assert all(r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] for r in at_l["per_k"])
    assert sum(t["correct"] for t in at_l["trials"]) == sum(r["correct"] for r in at_l["per_k"])
    past = passkey.evaluate(mini, tok, 2 * L, n_k=8, trials=5, seed=3, intro=False, batch_size=40)
    assert past["k_max"] == 0 and sum(r["correct"] for r in past["per_k"]) <= 2, past["per_k"]
    again = passkey.evaluate(mini, tok, 2 * L, n_k=8, trials=5, seed=3, intro=False, batch_size=8)
    assert again["trials"] == past["trials"]  # same prompts, same greedy answers, whatever the batch size
    other = passkey.evaluate(mini, tok, 2 * L, n_k=8, trials=5, seed=4, intro=False, batch_size=40)
    assert [t["key"] for t in other["trials"]] != [t["key"] for t in past["trials"]]


def test_key_lengths_from_one_key_equal_those_of_all_90000_keys():
    """layout's shortcut (digits stand alone: one key stands for all) gives what tokenizing every key gives, for
    the shipped tokenizer and a tiny one trained here; a tokenizer that merges digits takes the long way."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    def every_key(tok):
        keys = [str(k) for k in range(10000, 100000)]
        return (max(map(len, tok([" " + passkey.needle(k) for k in keys], add_special_tokens=False)["input_ids"])),
                max(map(len, tok([" " + k for k in keys], add_special_tokens=False)["input_ids"])))

    shipped = AutoTokenizer.from_pretrained(str(ROOT / "resources/models/mini"))
    assert passkey.digits_stand_alone(shipped)
    assert passkey.key_lengths(shipped) == every_key(shipped)
    merging = Tokenizer(models.BPE(unk_token="[UNK]"))  # digits not split: "12" can become one token
    merging.pre_tokenizer = pre_tokenizers.Whitespace()
    text = [f"The pass key is {k}. Remember it. {k} is the pass key." for k in range(10000, 10400)]
    merging.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                                          show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=merging, unk_token="[UNK]")
    assert not passkey.digits_stand_alone(fast)
    assert passkey.key_lengths(fast) == every_key(fast)


def test_key_positions_are_the_digits_of_both_copies_of_the_key_in_the_needle(tok):
    t = passkey.trial_at(tok, "60494", 77, 120, intro=False)
    pos = passkey.key_positions(tok, t)
    assert [tok.decode([t.ids[p]]) for p in pos] == list("60494") * 2
    assert len(t.ids) - t.k <= pos[0] and pos[-1] < len(t.ids) - len(enc(tok, " " + passkey.QUESTION))


def test_pi_at_step_0_takes_the_base_models_copying_head_off_the_key(tok, tmp_path):
    """The explanation docs/calibration.md gives for PI's lost retrieval at step 0, measured: on prompts inside L the
    base model's copying head (layer 3, head 1) puts most of its attention from each answer position on the digit
    to produce next, in the needle, and its previous-token heads on the token before; with the same weights and
    positions divided by 2 the previous-token heads lose their target and the copying head the key."""
    modeling.init_extension(MINI, "PI", 256, 128, tmp_path / "pi")
    rng = random.Random(0)
    trials = [passkey.trial_at(tok, passkey.random_key(rng), k, 120, intro=False) for k in (42, 77, 112) for _ in
              range(4)]
    base = passkey.attention_profile(modeling.load_model(MINI), tok, trials)
    pi = passkey.attention_profile(modeling.load_model(tmp_path / "pi"), tok, trials)
    target = np.asarray(base["target"])
    layer, head = np.unravel_index(target.argmax(), target.shape)
    assert (layer, head) == (3, 1) and target[layer, head] > 0.6  # one copying head, late
    assert pi["target"][layer][head] < target[layer, head] / 2
    prev = np.asarray(base["prev1"])
    top = np.argsort(prev, axis=None)[::-1][:3]
    assert np.asarray(pi["prev1"]).flat[top].sum() < 0.7 * prev.flat[top].sum()
    assert base["retrieved"] >= 0.75 and pi["retrieved"] <= 0.25
    assert min(base["p_digits"]) > 0.5 and max(pi["p_digits"]) < min(base["p_digits"])
