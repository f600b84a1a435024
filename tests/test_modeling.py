import pytest
import torch
from transformers import LlamaForCausalLM

from pi_repro import modeling


@pytest.mark.parametrize("scale", [2, 4, 2.5])
def test_pi_logits_equal_base_logits_with_positions_divided_by_s(tiny_llama, scale):
    cfg = modeling.extended_config(tiny_llama.config, "PI", int(16 * scale), 16)
    assert cfg.rope_parameters["rope_type"] == "linear" and cfg.rope_parameters["factor"] == pytest.approx(scale)
    assert cfg.rope_parameters["rope_theta"] == modeling.rope_theta(tiny_llama.config)
    pi = LlamaForCausalLM(cfg).eval()
    pi.load_state_dict(tiny_llama.state_dict(), strict=False)
    ids = torch.randint(0, 97, (2, 40))
    pos = torch.arange(40)[None].expand(2, -1)
    with torch.no_grad():
        a = pi(ids, position_ids=pos).logits
        b = tiny_llama(ids, position_ids=pos.float() / scale).logits
        c = tiny_llama(ids, position_ids=pos).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the scaling really changes the model


def test_ft_and_ct_keep_positions(tiny_llama):
    for method, window in (("FT", 64), ("CT", 16)):
        cfg = modeling.extended_config(tiny_llama.config, method, 64, 16)
        assert cfg.rope_parameters.get("rope_type", "default") == "default"
        assert cfg.max_position_embeddings == window
        assert modeling.scale_factor(cfg) == 1.0


def test_extension_refuses_shrinking_and_unknown_methods(tiny_llama):
    with pytest.raises(ValueError, match="smaller than the base window"):
        modeling.extended_config(tiny_llama.config, "PI", 8, 16)
    with pytest.raises(ValueError, match="unknown extension method"):
        modeling.extended_config(tiny_llama.config, "ALiBi", 32, 16)


def test_init_extension_round_trip_keeps_scaling(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "base")
    modeling.init_extension(tmp_path / "base", "PI", 64, 16, tmp_path / "pi")
    reloaded = modeling.load_model(tmp_path / "pi")
    assert modeling.scale_factor(reloaded.config) == 4.0
    ids = torch.randint(0, 97, (1, 50))
    with torch.no_grad():
        want = tiny_llama(ids, position_ids=torch.arange(50)[None].float() / 4).logits
        torch.testing.assert_close(reloaded(ids).logits, want, rtol=1e-5, atol=1e-5)


def test_incomplete_checkpoint_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        modeling.load_model(tmp_path)


def test_init_extension_copies_sharded_weights_without_loading(tiny_llama, tmp_path):
    """Paper-size base models come in shards; step 0 copies them under the new config (no load, no memory)."""
    from pi_repro.io import sha256_weights, weight_files

    tiny_llama.save_pretrained(tmp_path / "base", max_shard_size="20KB")
    shards = weight_files(tmp_path / "base")
    assert len(shards) > 1 and shards[0].name.startswith("model-0000")
    modeling.init_extension(tmp_path / "base", "PI", 32, 16, tmp_path / "pi")
    assert sha256_weights(tmp_path / "pi") == sha256_weights(tmp_path / "base")
    assert modeling.scale_factor(modeling.load_model(tmp_path / "pi").config) == 2.0


def test_probe_catches_a_dropped_scaling_factor(tiny_llama, tmp_path):
    modeling.init_extension(_saved(tiny_llama, tmp_path), "PI", 64, 16, tmp_path / "pi")
    pi = modeling.load_model(tmp_path / "pi")
    modeling.record_probe(pi, tmp_path / "pi", ctx=64)
    assert modeling.verify_probe(modeling.load_model(tmp_path / "pi"), tmp_path / "pi") < 1e-5
    # the failure known in the field: a checkpoint whose config lost rope_parameters' factor
    cfg = (tmp_path / "pi/config.json").read_text().replace('"rope_type": "linear"', '"rope_type": "default"')
    (tmp_path / "pi/config.json").write_text(cfg)
    with pytest.raises(RuntimeError, match="does not reproduce the logits"):
        modeling.verify_probe(modeling.load_model(tmp_path / "pi"), tmp_path / "pi")
    with pytest.raises(FileNotFoundError, match="probe.safetensors is missing"):
        modeling.verify_probe(tiny_llama, tmp_path)  # no probe is an error, not a skipped check


def _saved(model, tmp_path):
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base"
