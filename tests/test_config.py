import copy
from pathlib import Path

import pytest
import yaml
from pi_repro import config as C
from pi_repro import kinds, sizing, targets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    """A shipped config as the workflow reads it (merged with the one it extends)."""
    return C.resolve_extends(yaml.safe_load((ROOT / "config" / name).read_text()))


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "pretrain.yaml", "paper.yaml", "smollm2.yaml",
                                  "table4-regimes.yaml", "pretrain-deep.yaml", "pretrain-heads.yaml"])
def test_shipped_configs_are_valid(name):
    C.validate(load(name))


def broken(mutate):
    cfg = load("config.yaml")
    mutate(cfg)
    with pytest.raises(targets.ConfigError) as e:
        C.validate(cfg)
    return str(e.value)


def test_unknown_key_is_named():
    msg = broken(lambda c: c["train"].update(learning_rate=1))
    assert "train" in msg and "learning_rate" in msg


def test_wrong_type_is_named():
    assert "base_window" in broken(lambda c: c.update(base_window="128"))


def test_unknown_method_is_named():
    msg = broken(lambda c: c["extensions"][1].update(method="ALiBi"))
    assert "extensions[1].method" in msg and "ALiBi" in msg


def test_scale_below_one_is_refused():
    msg = broken(lambda c: c["extensions"][0].update(ctx=64))
    assert "extensions[0].ctx" in msg and "scale" in msg


def test_stride_not_below_window_is_refused():
    msg = broken(lambda c: c["perplexity"].update(stride=64))
    assert "perplexity.stride" in msg


def test_eval_window_beyond_every_model_is_refused():
    msg = broken(lambda c: c["perplexity"].update(windows=c["perplexity"]["windows"] + [4096]))
    assert "perplexity.windows" in msg and "4096" in msg


def test_extrapolation_window_must_be_an_eval_window():
    assert "tables.table1.extrapolate_to.mini" in broken(
        lambda c: c["tables"]["table1"]["extrapolate_to"].update(mini=300))
    assert "tables.table2.extrapolate_to.huge" in broken(
        lambda c: c["tables"]["table2"]["extrapolate_to"].update(huge=256))


def test_checkpoint_beyond_training_is_refused():
    assert "extensions[1].checkpoints" in broken(lambda c: c["extensions"][1]["checkpoints"].append(10**6))


def test_unknown_size_and_dataset_are_named():
    assert "extensions[0].size" in broken(lambda c: c["extensions"][0].update(size="70B"))
    assert "finetune_data[0]" in broken(lambda c: c.update(finetune_data=["pile"]))


def test_proofpile_documents_must_cover_the_largest_window():
    assert "doc_tokens" in broken(lambda c: c["datasets"]["proofpile"]["eval"].update(doc_tokens=256))


def test_bad_sha256_format_is_named():
    assert "datasets.pg19.sha256" in broken(lambda c: c["datasets"]["pg19"].update(sha256="abc"))


def test_table_cells_follow_the_config():
    cfg = load("config.yaml")
    L = cfg["base_window"]
    cells = [c[2:] for c in kinds.table_cells(cfg, "table1")]  # (size, model, window)
    base = [w for s, m, w in cells if m == "base"]
    up_to = cfg["tables"]["table1"]["extrapolate_to"]["mini"]
    assert base == [w for w in sorted(cfg["perplexity"]["windows"]) if w <= up_to]
    del cfg["tables"]["table2"]["extrapolate_to"]
    assert [c[4] for c in kinds.table_cells(cfg, "table2") if c[3] == "base"] == [
        w for w in cfg["perplexity"]["windows"] if w <= L]
    for ext in cfg["extensions"]:
        got = sorted(w for s, m, w in cells if m == targets.final_model(ext))
        assert got == [w for w in sorted(cfg["perplexity"]["windows"]) if w <= ext["ctx"]]
    t3 = kinds.table_cells(cfg, "table3")
    assert ("ppl", "pg19", "mini", f"PI-{2 * L}/step0", 2 * L) in t3
    assert kinds.eval_windows(cfg, "ppl", "pg19", "mini", f"PI-{2 * L}/step25") == [2 * L]
    assert targets.model_coords(cfg, "mini", f"PI-{2 * L}/step25") == {"size": "mini", "method": "PI", "ctx": 2 * L,
                                                                "tag": None, "step": 25, "mixture": "pretraining"}
    assert targets.model_coords(cfg, "mini", "base")["method"] == "None"


def test_a_config_may_leave_out_any_table():
    """Without table2 (or any table) the DAG has no job for it, and the findings read what remains."""
    cfg = load("config.yaml")
    del cfg["tables"]["table2"]
    C.validate(cfg)
    assert not any(c[1] == "proofpile" for t in cfg["tables"] for c in kinds.table_cells(cfg, t))


def test_table_entries_are_checked_by_their_kind():
    assert "tables.table4.kind" in broken(lambda c: c["tables"].update(table4={"kind": "passkeys"}))
    assert "tables.table3" in broken(lambda c: c["tables"]["table3"].pop("rows"))
    assert "tables.table3.rows[0]" in broken(lambda c: c["tables"]["table3"]["rows"][0].update(ctx=1024))
    assert "tables.table1.dataset" in broken(lambda c: c["tables"]["table1"].update(dataset="arxiv"))
    assert "extensions[0].method" in broken(lambda c: c["extensions"][0].update(method="ALiBi"))


def test_passkey_table_cells_and_windows_follow_its_rows():
    """Table 4 (kind passkey): the base model at each listed window, PI/FT at their fine-tuned steps (not step 0,
    as the paper's Table 4) or the listed ones, CT at its final step and at L, each at its own window."""
    cfg = load("config.yaml")
    L = cfg["base_window"]
    cfg["tables"]["table4"]["rows"] = [{"size": "mini", "method": "None", "windows": [L, 2 * L]},
                                       {"size": "mini", "method": "PI", "ctx": 2 * L},
                                       {"size": "mini", "method": "PI", "ctx": 4 * L, "steps": [0, 50]},
                                       {"size": "mini", "method": "CT", "ctx": 2 * L}]
    C.validate(cfg)
    cells = {c[2:] for c in kinds.table_cells(cfg, "table4")}
    assert all(c[:2] == ("passkey", "synthetic") for c in kinds.table_cells(cfg, "table4"))
    assert cells == {("mini", "base", L), ("mini", "base", 2 * L), ("mini", f"CT-{2 * L}/step100", L),
                     ("mini", f"PI-{4 * L}/step0", 4 * L), ("mini", f"PI-{4 * L}/step50", 4 * L)} | {
        ("mini", f"PI-{2 * L}/step{n}", 2 * L) for n in (25, 50, 75, 100)}
    assert kinds.eval_windows(cfg, "passkey", "synthetic", "mini", "base") == [L, 2 * L]
    assert targets.passkey_protocol(cfg)["trials"] == 10  # the paper's defaults
    assert targets.passkey_protocol({})["intro"] is True


def test_passkey_entries_are_checked():
    t4 = lambda c: c["tables"]["table4"]["rows"]  # noqa: E731
    assert "tables.table4.rows[1].steps" in broken(lambda c: t4(c)[1].update(steps=[30]))  # not exported
    assert "tables.table4.rows[1]" in broken(lambda c: t4(c)[1].update(ctx=1024))  # no such extension
    assert "needs ctx" in broken(lambda c: t4(c)[1].pop("ctx"))
    assert "tables.table4.rows[0].ctx" in broken(lambda c: t4(c)[0].update(ctx=256))  # the base model has none
    assert "tables.table4.rows[0].size" in broken(lambda c: t4(c)[0].update(size="7B"))
    assert "tables.table4.rows[1]" in broken(lambda c: t4(c)[1].update(window=[256]))  # misspelt key
    assert "same model twice" in broken(lambda c: t4(c).append(dict(t4(c)[1])))
    assert "tables.table4.dataset" in broken(lambda c: c["tables"]["table4"].update(dataset="pg19"))
    assert "passkey.threshold" in broken(lambda c: c["passkey"].update(threshold=1.5))
    assert "passkey" in broken(lambda c: c["passkey"].update(num_keys=3))


def test_benchmarks_table_cells_and_errors():
    """Table 5 (kind benchmarks): one record per row's model at its final step, all at the original window."""
    cfg = load("config.yaml")
    L = cfg["base_window"]
    assert [c[2:] for c in kinds.table_cells(cfg, "table5")] == [
        ("mini", "base", L), ("mini", f"FT-{2 * L}/step100", L), ("mini", f"PI-{2 * L}/step100", L),
        ("mini", f"PI-{4 * L}/step100", L), ("mini", f"CT-{2 * L}/step100", L)]
    assert all(c[:2] == ("bench", "zeroshot") for c in kinds.table_cells(cfg, "table5"))
    assert targets.model_finetune_data(cfg, "mini", f"PI-{2 * L}/step100") == cfg["finetune_data"]
    assert targets.harness_benchmarks(cfg) == [] and set(targets.built_benchmarks(cfg)) == {"cloze_pg19", "cloze_coq"}
    t5 = lambda c: c["tables"]["table5"]["rows"]  # noqa: E731
    assert "tables.table5.rows[1]" in broken(lambda c: t5(c)[1].update(ctx=1024))
    assert "tables.table5.rows[0].ctx" in broken(lambda c: t5(c)[0].update(ctx=128))
    assert "tables.table5.rows[1]" in broken(lambda c: t5(c)[1].update(steps=[25]))  # no steps in this kind
    assert "benchmarks block" in broken(lambda c: c.pop("benchmarks"))
    bt = lambda c: c["benchmarks"]["tasks"]["cloze_pg19"]["build"]  # noqa: E731
    assert "benchmarks.tasks.cloze_pg19.build.dataset" in broken(lambda c: bt(c).update(dataset="arxiv"))
    assert "benchmarks.tasks.cloze_pg19.build.context_tokens" in broken(lambda c: bt(c).update(context_tokens=120))
    assert "benchmarks.tasks.cloze_pg19.build" in broken(lambda c: bt(c).update(kind="lambada"))
    assert "benchmarks.tasks.cloze_pg19" in broken(lambda c: c["benchmarks"]["tasks"]["cloze_pg19"].pop("label"))


def test_hyperparameters_merge_train_size_extension():
    cfg = load("config.yaml")
    ext = copy.deepcopy(cfg["extensions"][0])
    ext["global_batch"] = 16
    hp = targets.train_hparams(cfg, ext)
    assert hp["global_batch"] == 16 and hp["lr"] == cfg["sizes"]["mini"]["lr"] and hp["steps"] == ext["steps"]


def test_the_fine_tuning_mixture_is_chosen_per_extension_and_checked():
    """A mixture puts its passkey fraction in the hp (so in the rule's params and the resume identity); corpus is
    the text alone and adds nothing to the hp (the paper's runs are unchanged); an unknown mixture, a mixture for PI
    without fine-tuning, a fraction out of range and a mixture named corpus are each refused with the key named."""
    cfg = load("table4-regimes.yaml")
    assert {e.get("mixture") for e in cfg["extensions"]} == {"pretraining", "corpus"}
    assert targets.train_hparams(cfg, cfg["extensions"][2])["mixture"] == {"name": "pretraining",
                                                                           "passkey_fraction": 0.15}
    plain = cfg["extensions"][3]
    assert "mixture" not in targets.train_hparams(cfg, plain) and targets.mixture_name(cfg, plain) == "corpus"
    assert all("mixture" not in targets.train_hparams(load("paper.yaml"), e) for e in load("paper.yaml")["extensions"])
    assert targets.model_coords(cfg, "mini", "base")["mixture"] is None
    msg = broken(lambda c: c["extensions"][0].update(mixture="pile"))
    assert "extensions[0].mixture" in msg and "'pile'" in msg and "pretraining" in msg
    msg = broken(lambda c: c["extensions"][1].update(steps=0, checkpoints=[0], mixture="pretraining"))
    assert "extensions[1].mixture" in msg and "steps: 0" in msg
    assert "passkey_fraction" in broken(lambda c: c["finetune_mixtures"]["pretraining"].update(passkey_fraction=0.95))
    assert "corpus" in broken(lambda c: c["finetune_mixtures"].update(corpus={"passkey_fraction": 0.1}))


def test_a_variant_needs_its_own_tag():
    dup = lambda c: c["extensions"].append(dict(c["extensions"][1]))  # noqa: E731
    assert "duplicate extension" in broken(dup) and "tag" in broken(dup)
    cfg = load("config.yaml")
    cfg["extensions"].append(dict(cfg["extensions"][1], tag="austen", data=["pg19"]))
    C.validate(cfg)
    assert targets.extension_name(cfg["extensions"][-1]) == "PI-256-austen"
    assert targets.extension_by_name(cfg, "mini", "PI-256-austen") is cfg["extensions"][-1]
    assert not any("austen" in c[3] for c in kinds.table_cells(cfg, "table1"))  # variants are not rows of Tables 1-3


def test_global_batch_must_split_over_the_ranks():
    def four_gpus(c):
        c["sizes"]["mini"]["resources"] = {"train_nodes": 2, "train_gpus_per_node": 3}
    msg = broken(four_gpus)
    assert "global batch 8" in msg and "6 ranks" in msg


def test_missing_deepspeed_config_and_eval_block_are_named():
    assert "train.deepspeed" in broken(lambda c: c["train"].update(deepspeed="config/deepspeed/nope.json"))
    assert "needs an eval block" in broken(lambda c: c["datasets"]["pg19"].pop("eval"))


def test_hub_revisions_must_be_full_commits():
    def short(c):
        c["sizes"]["mini"]["base"] = {"source": "hub", "id": "huggyllama/llama-7b", "revision": "main"}
    assert "sizes.mini.base" in broken(short)
    paper = load("paper.yaml")
    paper["datasets"]["pg19"]["hub"]["revision"] = "main"
    with pytest.raises(targets.ConfigError, match="datasets.pg19.hub.revision"):
        C.validate(paper)


def test_cluster_settings_that_cannot_work_are_refused():
    assert "cluster.stop_margin_min" in broken(
        lambda c: c.update(cluster={"time_limit_min": 20, "stop_margin_min": 20}))
    full = lambda c: c["sizes"]["mini"].update(resources={"train_full_node": True})  # noqa: E731
    assert "train_full_node" in broken(full) and "node_mem_mb" in broken(full)
    one = lambda c: c["sizes"]["mini"].update(resources={"train_launch": "srun"})  # noqa: E731
    assert "train_launch" in broken(one)  # SLURM's mpi jobs need more than one task
    assert "cluster" in broken(lambda c: c.update(cluster={"time_limit": 60}))  # misspelt key


def test_a_finetune_longer_than_the_limit_is_split_into_submissions():
    cfg = load("config.yaml")
    cfg["cluster"] = {"time_limit_min": 60, "stop_margin_min": 10}
    cfg["extensions"][0]["resources"] = {"train_runtime": 120}
    job = sizing.train_job(cfg, cfg["extensions"][0])
    assert (job["runtime"], job["submissions"]) == (60, 3)  # 50 min of training per 60-min job
    assert sizing.finetune_retries(cfg) == 3 - 1 + 2  # plus the default failure retries
    assert sizing.train_job(cfg, cfg["extensions"][1])["submissions"] == 2  # the default 60 min: 2 x 50 min
    del cfg["cluster"]
    assert sizing.finetune_retries(cfg) is None  # no limit: Snakemake's --retries decides


def test_a_config_states_only_what_differs_from_the_one_it_extends(tmp_path):
    """`extends`: the named config with this one applied as a JSON Merge Patch (RFC 7396): mappings merge, lists
    are replaced whole, null removes a key; chains resolve; a missing file or a circle is named."""
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": 1, "g": 2}
    assert C.merge_patch(base, {"a": {"c": [3], "d": {"x": 2}}, "f": None, "h": [4]}) == {
        "a": {"b": 1, "c": [3], "d": {"e": 1, "x": 2}}, "g": 2, "h": [4]}
    assert base["a"]["d"] == {"e": 1}  # the base is not modified
    heads = yaml.safe_load((ROOT / "config/pretrain-heads.yaml").read_text())
    deep = load("pretrain-deep.yaml")
    assert heads["extends"] == "config/pretrain-deep.yaml" and load("pretrain-heads.yaml") == dict(
        deep, run="pretrain-heads", sizes={"mini": dict(deep["sizes"]["mini"], base=dict(
            deep["sizes"]["mini"]["base"], arch=heads["sizes"]["mini"]["base"]["arch"]))})
    assert set(load("table4-regimes.yaml")["tables"]) == {"table4"} and "manpages" not in load(
        "table4-regimes.yaml")["datasets"]
    cfg = {"extends": "config/table4-regimes.yaml", "run": "x"}
    C.validate(cfg)  # in place: what the workflow's `config` becomes
    assert "extends" not in cfg and cfg["run"] == "x" and set(cfg["tables"]) == {"table4"}
    with pytest.raises(targets.ConfigError, match=r"config error at extends: 'config/nope.yaml' is not a config file"):
        C.validate({"extends": "config/nope.yaml"})
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"extends: {b}\n")
    b.write_text(f"extends: {a}\n")
    with pytest.raises(targets.ConfigError, match="extend each other in a circle"):
        C.resolve_extends({"extends": str(a)})


@pytest.mark.parametrize("name,target", [("table4-regimes.yaml", "table4"), ("pretrain-heads.yaml", "table4")])
def test_snakemake_runs_an_extending_config_as_its_merged_whole(name, target, tmp_path):
    """The same jobs, with the same commands, from the overlay and from the merged config written out in full."""
    import subprocess
    import sys

    merged = subprocess.run([sys.executable, "workflow/scripts/check_config.py", "--print", f"config/{name}"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (tmp_path / "full.yaml").write_text(merged)
    assert "extends" not in yaml.safe_load(merged)

    def plan(path):
        p = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-p", "--forceall", "--configfile",
                            str(path)], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        return sorted(line.strip() for line in p.stdout.splitlines() if "workflow/scripts/" in line)

    overlay = plan(f"config/{name}")
    assert overlay and overlay == plan(tmp_path / "full.yaml")
