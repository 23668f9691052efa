import pytest

from aiayn.models import ModelConfig


@pytest.mark.parametrize(
    "overrides, field, value",
    [
        ({"d_model": 100, "n_heads": 3}, "d_model", "100"),
        ({"n_heads": 8, "n_kv_heads": 3}, "n_heads", "8"),
        ({"activation": "tanh"}, "activation", "'tanh'"),
        ({"positional": "relative"}, "positional", "'relative'"),
        ({"dropout": 1.0}, "dropout", "1.0"),
        ({"dropout": -0.1}, "dropout", "-0.1"),
        ({"attn_dropout": 1.5}, "attn_dropout", "1.5"),
        ({"norm": "batchnorm"}, "norm", "'batchnorm'"),
        ({"arch": "rnn"}, "arch", "'rnn'"),
        ({"n_layers": 0}, "n_layers", "0"),
        ({"pooling": "max"}, "pooling", "'max'"),
        ({"positional": "rope", "d_model": 12, "n_heads": 4}, "positional", "'rope'"),
        ({"src_vocab_size": 100, "vocab_size": 200}, "share_embeddings", "True"),
    ],
)
def test_bad_config_names_the_field_and_the_value(overrides, field, value):
    with pytest.raises(ValueError) as e:
        ModelConfig(**overrides)
    assert f"model.{field}={value}" in str(e.value)


def test_config_is_frozen():
    cfg = ModelConfig()
    with pytest.raises(AttributeError):
        cfg.d_model = 3


def test_derived_values():
    cfg = ModelConfig(n_layers=4, n_heads=8, n_kv_heads=2, norm_first=True)
    assert cfg.decoder_layers == 4 and cfg.kv_heads == 2 and cfg.d_head == 64
    assert cfg.has_final_norm and not ModelConfig().has_final_norm
    assert ModelConfig(final_norm=True).has_final_norm


def test_from_toml_reads_the_model_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nd_model = 64\nn_heads = 4\ndropout = 0\nnorm_first = true\n")
    cfg = ModelConfig.from_toml(path)
    assert cfg.d_model == 64 and cfg.n_heads == 4 and cfg.norm_first
    assert isinstance(cfg.dropout, float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[model]\nd_modle = 64\n", "unknown key model.d_modle; valid keys: arch, vocab_size"),
        ("[model]\nd_model = '64'\n", "model.d_model='64' has the wrong type; expected int"),
        ("[model]\nnorm_first = 1\n", "model.norm_first=1 has the wrong type; expected bool"),
        ("[model]\nd_model = 6.5\n", "model.d_model=6.5 has the wrong type"),
        ("[train]\nlr = 1\n", "has no [model] table"),
        ("[model\n", "is not valid TOML"),
    ],
)
def test_from_toml_refuses_bad_files_clearly(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ModelConfig.from_toml(path)


def test_from_toml_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.toml' does not exist"):
        ModelConfig.from_toml(tmp_path / "nope.toml")


def test_to_dict_round_trips():
    cfg = ModelConfig(d_model=64, n_heads=4, positional="rope")
    assert ModelConfig(**cfg.to_dict()) == cfg
