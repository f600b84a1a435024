"""Table 5's tasks: the offline cloze items, and lm-evaluation-harness scoring them on a real model exactly as a
direct computation does, with a PI model's scaling in force."""
import json
from pathlib import Path

import pytest
import torch

from pi_repro import benchmarks, data, modeling

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "resources" / "models" / "mini"


@pytest.fixture(scope="module")
def tok():
    return modeling.load_tokenizer(MINI)


@pytest.fixture(scope="module")
def austen():
    docs = data.read_corpus(ROOT / "resources/corpora/austen.jsonl.gz")
    return [d["text"] for d in docs if d["split"] == "test"], [d["text"] for d in docs if d["split"] == "train"]


@pytest.mark.parametrize("distractors", ["band", "context"])
def test_cloze_items_hide_a_word_of_held_out_text(tok, austen, distractors):
    test, train = austen
    items = benchmarks.cloze_items(test, train, tok, 60, 48, seed=5, distractors=distractors)
    assert len(items) == 60 and len({it["id"] for it in items}) == 60
    assert items == benchmarks.cloze_items(test, train, tok, 60, 48, seed=5, distractors=distractors)  # seeded
    assert items != benchmarks.cloze_items(test, train, tok, 60, 48, seed=6, distractors=distractors)
    for it in items:
        d, start = map(int, it["id"].split(":"))
        doc = test[d]
        assert doc[:start].rstrip().endswith(it["context"])  # the text right before the hidden word, verbatim
        assert len(tok(it["context"], add_special_tokens=False)["input_ids"]) <= 48
        gold = it["choices"][it["label"]]
        assert doc[start:].startswith(gold) and gold.startswith(it["word"])  # the true continuation
        rest = gold[len(it["word"]):]
        words = [c[:len(c) - len(rest)] if rest else c for c in it["choices"]]
        assert all(c.endswith(rest) for c in it["choices"]) and len(set(words)) == 4  # same rest, 4 words
        if distractors == "context":
            assert all(w in it["context"] for i, w in enumerate(words) if i != it["label"])
    with pytest.raises(ValueError, match="items could be built"):
        benchmarks.cloze_items(test[:1], train, tok, 10**5, 48, seed=5)


def test_harness_scores_an_item_as_a_direct_computation_with_the_pi_scaling_in_force(tok, austen, tmp_path):
    """The harness's log-likelihood of every option of built items equals a direct forward pass of the same model
    (context tokens, then the option's), for the base model and for its PI extension (the same weights with
    positions divided by 2): the PI numbers differ from the base's, so the scaling is in the model scored."""
    test, train = austen
    items = benchmarks.cloze_items(test, train, tok, 4, 48, seed=1, distractors="context")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp_path / "cloze_t.yaml").write_text(benchmarks.task_yaml("cloze_t", str(tmp_path / "t.jsonl")))
    base = modeling.load_model(MINI)
    pi_dir = tmp_path / "pi"
    modeling.init_extension(MINI, "PI", 256, 128, pi_dir)
    pi = modeling.load_model(pi_dir)
    assert modeling.check_scaling(pi.config, "PI", 256, 128) == 2.0
    scores = {}
    for name, model in (("base", base), ("pi", pi)):
        res = benchmarks.run_harness(model, tok, ["cloze_t"], str(tmp_path), 128, 4, seed=0)
        samples = sorted(res["samples"]["cloze_t"], key=lambda s: s["doc_id"])
        got = [benchmarks.sample_record(s)["loglikelihoods"][i][0] for s in samples for i in range(4)]
        want = []
        for it in items:
            ctx = tok(it["context"], add_special_tokens=False)["input_ids"]
            row = []
            for choice in it["choices"]:
                whole = tok(it["context"] + " " + choice, add_special_tokens=False)["input_ids"]
                cont = whole[len(ctx):]
                ids = torch.tensor([ctx + cont])
                with torch.no_grad():
                    logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
                row.append(sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)))
            want += row
        assert got == pytest.approx(want, abs=1e-3), name
        scores[name] = got
        accs = [s["acc"] for s in samples]
        assert res["results"]["cloze_t"]["acc,none"] == pytest.approx(sum(accs) / len(accs))
    assert scores["pi"] != pytest.approx(scores["base"], abs=1e-2)


def test_a_checkpoint_without_its_scaling_is_refused(tmp_path):
    cfg = modeling.load_model(MINI).config
    with pytest.raises(RuntimeError, match="a PI model of window 256 from L = 128 has 256"):
        modeling.check_scaling(cfg, "PI", 256, 128)  # the base model under an extension's name
    lost = modeling.extended_config(cfg, "PI", 256, 128)
    lost.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
    with pytest.raises(RuntimeError, match="rope_parameters are .* must have .*'linear', 'factor': 2.0"):
        modeling.check_scaling(lost, "PI", 256, 128)  # the extension's window, its scaling lost
    assert modeling.check_scaling(modeling.extended_config(cfg, "FT", 256, 128), "FT", 256, 128) == 1.0


def test_shipped_race_tasks_are_the_harness_race_with_middle_and_high_pinned():
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml as load_yaml_config

    tm = TaskManager(include_path=str(ROOT / "resources/lm_eval_tasks"))
    assert {"race_middle", "race_high", "race"} <= set(tm.all_tasks)
    mid = load_yaml_config(str(ROOT / "resources/lm_eval_tasks/race_middle.yaml"))
    high = load_yaml_config(str(ROOT / "resources/lm_eval_tasks/race_high.yaml"))
    stock = load_yaml_config(str(Path(__import__("lm_eval").__file__).parent / "tasks/race/race.yaml"))
    assert (mid["dataset_name"], high["dataset_name"], stock["dataset_name"]) == ("middle", "high", "high")
    assert mid["dataset_path"] == stock["dataset_path"] and len(mid["dataset_kwargs"]["revision"]) == 40
    for f in ("doc_to_text", "doc_to_target", "doc_to_choice"):  # the stock task's functions, not copies
        assert (mid[f].__code__.co_filename, mid[f].__name__) == (stock[f].__code__.co_filename, stock[f].__name__)


@pytest.mark.parametrize("name,stock", [("boolq", "super_glue/boolq/default.yaml"), ("piqa", "piqa/piqa.yaml"),
                                        ("winogrande", "winogrande/default.yaml")])
def test_shipped_boolq_piqa_winogrande_are_the_harness_tasks_pinned_to_a_revision(name, stock, monkeypatch):
    """Table 5's other three tasks loaded the hub's current revision (issue #28): the shipped definitions, on the
    include path, replace the stock tasks of the same name; they are the stock ones field for field, plus a
    pinned revision, which reaches the dataset download."""
    import datasets
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml as load_yaml_config

    ours = load_yaml_config(str(ROOT / f"resources/lm_eval_tasks/{name}.yaml"))
    theirs = load_yaml_config(str(Path(__import__("lm_eval").__file__).parent / "tasks" / stock))
    assert len(ours.pop("dataset_kwargs")["revision"]) == 40
    theirs.pop("tag", None)
    for f in ("doc_to_text", "doc_to_target", "doc_to_choice"):  # functions: the stock task's own, imported
        if callable(theirs[f]):
            assert (ours[f].__code__.co_filename, ours[f].__name__) == (theirs[f].__code__.co_filename,
                                                                        theirs[f].__name__)
            ours.pop(f), theirs.pop(f)
    assert ours == theirs
    asked = {}

    class Asked(Exception):
        pass

    def load_dataset(*args, **kwargs):
        asked.update(kwargs, args=args)
        raise Asked

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    tm = TaskManager(include_path=str(ROOT / "resources/lm_eval_tasks"))
    with pytest.raises(Asked):
        tm.load([name])
    assert asked["revision"] == load_yaml_config(str(ROOT / f"resources/lm_eval_tasks/{name}.yaml"))[
        "dataset_kwargs"]["revision"]
