import json

import torch

from aiayn.cli import main
from aiayn.nn.attention import record_attention
from aiayn.tasks.translation import load_translator


def test_explain_prints_each_sublayers_shapes_and_head_entropies(tiny_run, capsys) -> None:
    source = "a man sees the dog"
    capsys.readouterr()
    assert main(["explain", "--model", str(tiny_run), "--src", source, "--json"]) == 0
    trip = json.loads(capsys.readouterr().out)
    translator = load_translator(tiny_run, log=lambda _: None)
    cfg = translator.model.cfg
    src, tgt_in, src_labels, in_labels = translator.inputs(source)
    s, t, d = src.size(1), tgt_in.size(1), cfg.d_model
    assert trip["source"] == src_labels and trip["target"] == in_labels
    expected = [
        *[(f"encoder.{i}.{m}", s) for i in range(cfg.n_layers) for m in ("self_attn", "ffn")],
        *[
            (f"decoder.{i}.{m}", t)
            for i in range(cfg.decoder_layers)
            for m in ("self_attn", "cross_attn", "ffn")
        ],
    ]
    assert [x["name"] for x in trip["sublayers"]] == [name for name, _ in expected]
    for step, (_, length) in zip(trip["sublayers"], expected, strict=True):
        assert step["shape_in"] == step["shape_out"] == [1, length, d]
        assert step["update_ratio"] > 0
    assert trip["logits"] == [1, t, cfg.vocab_size]

    # the entropies again, from the weights record_attention gives
    with torch.no_grad(), record_attention(translator.model) as weights:
        translator.model(src, tgt_in)
    for step in trip["sublayers"]:
        if step["name"].endswith("ffn"):
            assert step["entropy"] is None
            continue
        kind, layer, module = step["name"].split(".")
        w = weights[f"transformer.{kind}.layers.{layer}.{module}"][0].double()
        logs = torch.where(w > 0, w.log(), torch.zeros_like(w))
        entropy = (-(w * logs).sum(-1)).mean(-1)
        assert len(step["entropy"]) == cfg.n_heads
        torch.testing.assert_close(torch.tensor(step["entropy"], dtype=torch.double), entropy)
    masks = {x["name"]: x["mask"] for x in trip["sublayers"]}
    assert masks["decoder.0.self_attn"].startswith("causal")
    assert masks["encoder.0.self_attn"] == f"padding: 0 of {s} keys hidden from all {s} queries"


def test_explain_as_text_names_every_sublayer(tiny_run, capsys) -> None:
    capsys.readouterr()
    assert main(["explain", "--model", str(tiny_run), "--src", "a dog", "--tgt", "ein hund"]) == 0
    out = capsys.readouterr().out
    assert "decoder input: " in out and "<s>" in out
    for name in ("encoder.0.self_attn", "encoder.0.ffn", "decoder.0.cross_attn"):
        assert name in out
    assert "update/stream" in out and "mask: causal" in out


def test_explain_refuses_a_config_of_another_family(tmp_path, capsys) -> None:
    from tests.tasks.test_language_model import lm_config

    assert main(["explain", "--config", str(lm_config(tmp_path)), "--src", "x"]) == 2
    assert "explain follows a translation; this is decoder_only" in capsys.readouterr().err


def test_a_configs_random_model_runs_attention_by_the_configs_path(tmp_path) -> None:
    from aiayn.explain import random_translator
    from aiayn.nn.attention import MultiHeadAttention
    from aiayn.runtime.attention import KERNELS
    from tests.cli_helpers import write_config

    for impl in ("auto", "sdpa"):
        config = write_config(tmp_path, attn_impl=impl)
        model = random_translator(str(config), log=lambda _: None).model
        kernels = {m.kernel for m in model.modules() if isinstance(m, MultiHeadAttention)}
        assert kernels == {KERNELS[impl]}
