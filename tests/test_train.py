import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import save_word_tokenizer
from pi_repro import data as pi_data
from pi_repro import finetune, modeling, train
from safetensors.torch import load_file


def test_warmup_from_ten_percent_then_constant():
    lr = [train.lr_lambda(s, 20, 0.1) for s in range(30)]
    assert lr[0] == pytest.approx(0.1) and lr[10] == pytest.approx(0.55) and lr[20:] == [1.0] * 10
    assert all(b > a for a, b in zip(lr[:20], lr[1:21]))


def test_cosine_schedule_ends_at_min_ratio():
    assert train.lr_lambda(100, 10, 0.1, "cosine", 100, 0.1) == pytest.approx(0.1)
    assert train.lr_lambda(10, 10, 0.1, "cosine", 100, 0.1) == pytest.approx(1.0)


def test_linear_schedule_is_yarns_warmup_then_linear_decay_to_zero():
    """YaRN's fine-tuning (DeepSpeed's WarmupDecayLR): from 0 over 20 warmup steps, then linearly to 0 at step 400."""
    lr = [train.lr_lambda(s, 20, 0.0, "linear", 400, 0.0) for s in range(401)]
    assert lr[0] == 0.0 and lr[10] == pytest.approx(0.5) and lr[20] == pytest.approx(1.0)
    assert lr[210] == pytest.approx(0.5) and lr[400] == pytest.approx(0.0)
    assert all(b < a for a, b in zip(lr[20:400], lr[21:401]))


def test_ct_collator_trains_the_same_tokens_at_window_l():
    feats = [{"input_ids": torch.arange(8) + 10 * i} for i in range(2)]
    batch = train.SplitCollator(4)(feats)
    assert batch["input_ids"].shape == (4, 4)
    assert torch.equal(batch["input_ids"].flatten(), torch.cat([f["input_ids"] for f in feats]))
    assert train.SplitCollator(None)(feats)["input_ids"].shape == (2, 8)


HP = dict(global_batch=4, micro_batch=2, warmup_steps=2, warmup_start=0.1, schedule="constant", betas=[0.9, 0.95],
          weight_decay=0.0, lr=1e-3, seed=3, resume_every=2, log_every=1)


def _setup(tmp_path, tiny_llama, method="PI"):
    tiny_llama.save_pretrained(tmp_path / "base")
    save_word_tokenizer(tmp_path / "base", tiny_llama.config.vocab_size)
    modeling.init_extension(tmp_path / "base", method, 32, 16, tmp_path / "step0")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 97, 1000)
    pi_data.save_packed(tmp_path / "train.npy", [tokens[:300], tokens[300:]], 97)
    return [str(tmp_path / "train.npy")]


@pytest.mark.parametrize("method", ["PI", "CT"])
def test_finetune_exports_checkpoints_with_manifest(tmp_path, tiny_llama, method):
    data = _setup(tmp_path, tiny_llama, method)
    rec = finetune.finetune(str(tmp_path / "step0"), method, 32, 16, dict(HP, steps=4), [0, 2, 4],
                            str(tmp_path / "run"), str(tmp_path / "run/finetune.json"), data)
    assert set(rec["checkpoints"]) == {"step0", "step2", "step4"}
    man = json.loads((tmp_path / "run/finetune.json").read_text())
    for step, entry in man["checkpoints"].items():  # each checkpoint is one file: its digest is the file's sha256
        weights = tmp_path / ("step0" if step == "step0" else f"run/{step}") / "model.safetensors"
        assert entry["path"] == str(weights.parent)
        assert entry["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert man["checkpoints"]["step4"]["probe_error"] < 1e-4  # the reloaded export reproduces training-time logits
    assert man["checkpoints"]["step0"]["probe_error"] < 1e-4 and (tmp_path / "run/step4/probe.safetensors").is_file()
    m = modeling.load_model(tmp_path / "run/step4")
    assert modeling.scale_factor(m.config) == (2.0 if method == "PI" else 1.0)
    w2, w4 = load_file(tmp_path / "run/step2/model.safetensors"), load_file(tmp_path / "run/step4/model.safetensors")
    assert any(not torch.equal(w2[k], w4[k]) for k in w2)  # training really changed the weights


@pytest.fixture
def one_thread():
    """Bitwise comparisons of CPU training need one thread (see docs/architecture.md, "Determinism")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resumed_run_is_bitwise_equal_to_uninterrupted(tmp_path, tiny_llama, one_thread):
    data = _setup(tmp_path, tiny_llama)
    args = (str(tmp_path / "step0"), "PI", 32, 16)
    finetune.finetune(*args, dict(HP, steps=6), [6], str(tmp_path / "full"), str(tmp_path / "full/f.json"), data)
    # an interrupted run: stopped after 4 steps (Trainer state saved at step 4), then rerun to the end
    part = tmp_path / "part"
    trainer_hp = dict(HP, steps=6)
    model = modeling.load_model(tmp_path / "step0")
    model.train()
    tokens = finetune.training_tokens(data, HP["seed"])
    train.prepare_work_dir(part / "_trainer", finetune.run_params(trainer_hp, "PI", 32, str(tmp_path / "step0"), data))
    tr = train.build_trainer(model, train.Chunks(tokens, 32), dict(trainer_hp, steps=4), part / "_trainer", part, [],
                             None)
    tr.args.max_steps = 4
    tr.train()
    rec = finetune.finetune(*args, trainer_hp, [6], str(part), str(part / "f.json"), data)
    assert rec["resumed_from"] and rec["resumed_from"].endswith("checkpoint-4")
    a = load_file(tmp_path / "full/step6/model.safetensors")
    b = load_file(part / "step6/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_fine_tune_rerun_trains_nothing_and_counts_no_negative_tokens(tmp_path, tiny_llama):
    """A fine-tune whose attempt trained to the end (its resume state at the final step) but whose manifest was
    never written (interrupted while verifying; Snakemake then marks it incomplete): the rerun re-verifies the
    exports and trains no step past ``steps`` (before: it resumed and trained step 7 of 6, tokens_trained -256)."""
    data = _setup(tmp_path, tiny_llama)
    args = (str(tmp_path / "step0"), "PI", 32, 16, dict(HP, steps=4), [0, 2, 4], str(tmp_path / "run"))
    keep = {"keep_resume_state": True}  # the state an attempt interrupted before its manifest leaves
    first = finetune.finetune(*args, str(tmp_path / "run/finetune.json"), data, keep)
    (tmp_path / "run/finetune.json").unlink()  # as if interrupted before the manifest (and the resume state's end)
    log = (tmp_path / "run/train-log.jsonl").read_text()
    weights = (tmp_path / "run/step4/model.safetensors").read_bytes()
    again = finetune.finetune(*args, str(tmp_path / "run/finetune.json"), data, keep)
    assert again["resumed_from"].endswith("checkpoint-4")
    assert again["throughput"]["tokens_trained"] == first["throughput"]["tokens_trained"] == 4 * 4 * 32  # measured
    (tmp_path / "run/finetune.json").unlink()  # the attempt that trained, as it recorded it
    (tmp_path / "run/_trainer" / finetune.FINISHED).unlink()
    again = finetune.finetune(*args, str(tmp_path / "run/finetune.json"), data, keep)  # without its measurements
    assert again["throughput"] is None  # nothing trained in this attempt, and nothing negative
    assert (tmp_path / "run/train-log.jsonl").read_text() == log  # no step logged after the end
    assert not (tmp_path / "run/step5").exists() and sorted(p.name for p in (tmp_path / "run/_trainer").glob(
        "checkpoint-*")) == ["checkpoint-4"]
    assert (tmp_path / "run/step4/model.safetensors").read_bytes() == weights
    assert again["checkpoints"] == first["checkpoints"]  # the exports, verified again: the same digests and probes
    assert again["final_train_loss"] == pytest.approx(first["final_train_loss"], rel=0.05)
    assert all(v >= 0 for v in (again["tokens_per_step"], again["train_tokens_available"]))
    # another export list: step 1, before the resume state, cannot come from it: the run trains again
    (tmp_path / "run/finetune.json").unlink()
    rec = finetune.finetune(*args[:5], [0, 1, 4], *args[6:], str(tmp_path / "run/finetune.json"), data)
    assert rec["resumed_from"] is None and set(rec["checkpoints"]) == {"step0", "step1", "step4"}
    assert rec["throughput"]["tokens_trained"] == 4 * 4 * 32
    assert not (tmp_path / "run/_trainer").exists()  # by default, deleted once the manifest is written


def test_a_non_finite_loss_stops_the_run_at_its_step_and_the_rerun_resumes(tmp_path, tiny_llama, one_thread,
                                                                           monkeypatch):
    """A NaN loss at step 5 (fault injection: the loss of that step is multiplied by NaN before backward): the run
    stops naming step 5 before the optimizer step; the resume state of step 4 and the exports of steps 2 and 4
    stay, nothing of step 5 or later is exported, no manifest is written. The rerun (cause fixed) resumes from
    step 4 and ends with the weights of a run that never failed."""
    data = _setup(tmp_path, tiny_llama)
    args = (str(tmp_path / "step0"), "PI", 32, 16, dict(HP, steps=6), [2, 4, 6])
    finetune.finetune(*args, str(tmp_path / "clean"), str(tmp_path / "clean/f.json"), data)
    run = tmp_path / "run"
    monkeypatch.setenv(train.INJECT_NAN_ENV, "5")
    with pytest.raises(train.NonFiniteLoss, match=r"non-finite training loss \(nan\) at step 5: .*checkpoint-4"):
        finetune.finetune(*args, str(run), str(run / "f.json"), data)
    assert (run / "step2").is_dir() and (run / "step4").is_dir() and not (run / "step6").exists()
    assert not (run / "f.json").exists() and train.last_checkpoint(run / "_trainer").endswith("checkpoint-4")
    w4 = load_file(run / "step4/model.safetensors")
    assert all(torch.isfinite(v).all() for v in w4.values())
    monkeypatch.delenv(train.INJECT_NAN_ENV)
    rec = finetune.finetune(*args, str(run), str(run / "f.json"), data)
    assert rec["resumed_from"].endswith("checkpoint-4")
    a, b = load_file(tmp_path / "clean/step6/model.safetensors"), load_file(run / "step6/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_weights_are_never_exported(tmp_path, tiny_llama):
    with torch.no_grad():
        next(tiny_llama.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"logits are not finite; this checkpoint is not written"):
        modeling.record_probe(tiny_llama, tmp_path / "x", 16)
    assert not (tmp_path / "x").exists()


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_last_and_the_rerun_resumes(tmp_path, tiny_llama,
                                                                                     one_thread, monkeypatch):
    """The run's folder on a small tmpfs, filled to the last byte after step 3 (fault injection: a real ENOSPC
    from the file system at the next write, step 4's export): a clear error; the export and resume state of step
    2 intact; after space is freed the rerun resumes from step 2 to the weights of a run that never failed."""
    import os
    import subprocess

    fs = tmp_path / "fs"
    fs.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(fs)], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        data = _setup(tmp_path, tiny_llama)
        args = (str(tmp_path / "step0"), "PI", 32, 16, dict(HP, steps=6), [2, 4, 6])
        finetune.finetune(*args, str(tmp_path / "clean"), str(tmp_path / "clean/f.json"), data)
        run = fs / "run"
        monkeypatch.setenv(train.INJECT_FILL_ENV, "3")
        with pytest.raises(train.DiskFull, match=r"no space left on the device while writing step 4 .* the resume "
                                                 r"state .*checkpoint-2 are intact"):
            finetune.finetune(*args, str(run), str(run / "f.json"), data)
        assert not (run / "step4").exists() and not (run / "f.json").exists()
        w2 = load_file(run / "step2/model.safetensors")
        assert train.last_checkpoint(run / "_trainer").endswith("checkpoint-2")
        monkeypatch.delenv(train.INJECT_FILL_ENV)
        (run / "_trainer/.filler").unlink()
        rec = finetune.finetune(*args, str(run), str(run / "f.json"), data)
        assert rec["resumed_from"].endswith("checkpoint-2")
        assert all(torch.equal(w2[k], v) for k, v in load_file(run / "step2/model.safetensors").items())
        a, b = load_file(tmp_path / "clean/step6/model.safetensors"), load_file(run / "step6/model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        subprocess.run(["umount", "--lazy", str(fs)], capture_output=True)  # tensors may still map its files


MINI = "resources/models/mini"


def _mini_data(tmp_path, n_docs=40):
    """The shipped base model's tokenizer and a packed slice of the Austen corpus it was trained on."""
    from itertools import islice

    tok = modeling.load_tokenizer(MINI)
    texts = [d["text"] for d in islice(pi_data.iter_corpus("resources/corpora/austen.jsonl.gz"), n_docs)]
    pi_data.save_packed(tmp_path / "train.npy", pi_data.encode_docs(tok, texts), len(tok))
    return tok, [str(tmp_path / "train.npy")]


def test_the_pretraining_mixture_lays_passkey_documents_out_at_the_training_window(tmp_path):
    """finetune_mixtures: f of the sequences are passkey documents (needle, question and answer inside the training
    window, L' for PI and FT, each L-piece for CT) filled up with corpus text; the corpus chunks are those of the
    text alone, every item is a function of (seed, index); without a mixture the data is exactly the text's."""
    from pi_repro import passkey

    tok, files = _mini_data(tmp_path)
    stream = finetune.training_tokens(files, 3)
    mix = dict(HP, steps=2, mixture={"name": "pretraining", "passkey_fraction": 0.15})
    plain = finetune.training_data(stream, 256, "PI", 128, dict(HP, steps=2), tok)
    assert type(plain) is train.Chunks
    for method, piece in (("PI", 256), ("FT", 256), ("CT", 128)):
        ds = finetune.training_data(stream, 256, method, 128, mix, tok)
        assert isinstance(ds, finetune.PasskeyMixture) and len(ds.chunks) == len(plain)
        assert ds.n_passkey / len(ds) == pytest.approx(0.15, abs=0.01)
        assert all(torch.equal(ds[i]["input_ids"], plain[i]["input_ids"]) for i in range(0, len(plain), 7))
        distances = set()
        for i in range(len(plain), len(ds)):
            ids = ds[i]["input_ids"]
            assert ids.shape == (256,) and torch.equal(ids, finetune.training_data(stream, 256, method, 128, mix,
                                                                                   tok)[i]["input_ids"])
            for part in ids.split(piece):
                text = tok.decode(part)
                key = passkey.first_number(text.split("The pass key is", 1)[1])
                head, tail = text.split(passkey.QUESTION, 1)
                assert f"The pass key is {key}. Remember it. {key} is the pass key." in head  # whole needle
                assert tail.startswith(f" {key}.")  # the answer follows the question, in the same piece
                distances.add(len(head) - head.index("The pass key is"))
        assert len(distances) > 20  # the needle-to-question distance varies over the window
    with pytest.raises(ValueError, match="needs .* tokens; the window is 32"):
        finetune.PasskeyMixture(stream, 32, tok, 0.15, 3)  # the document cannot fit: said before training


def test_a_fine_tune_on_a_mixture_records_it_and_trains(tmp_path):
    """The fine-tune script's path (finetune.finetune) with a mixture: the manifest names it, the hp carry its
    fraction (so a resume under another mixture starts over), and training changes the weights."""
    _, files = _mini_data(tmp_path)
    modeling.init_extension(MINI, "PI", 256, 128, tmp_path / "step0")
    hp = dict(HP, steps=2, global_batch=4, micro_batch=4, mixture={"name": "pretraining", "passkey_fraction": 0.5})
    finetune.finetune(str(tmp_path / "step0"), "PI", 256, 128, hp, [0, 2], str(tmp_path / "run"),
                      str(tmp_path / "run/finetune.json"), files)
    man = json.loads((tmp_path / "run/finetune.json").read_text())
    assert man["mixture"] == "pretraining" and man["hp"]["mixture"]["passkey_fraction"] == 0.5
    assert man["checkpoints"]["step2"]["probe_error"] < 1e-4
    assert finetune.run_params(hp, "PI", 256, str(tmp_path / "step0"), files) != finetune.run_params(
        dict(HP, steps=2, global_batch=4, micro_batch=4), "PI", 256, str(tmp_path / "step0"), files)
