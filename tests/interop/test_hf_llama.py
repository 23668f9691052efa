"""Llama, Mistral and Qwen2 checkpoints (random-initialised with `transformers`) against
aiayn's import: logits of a left-padded batch, and greedy generation against `generate`."""

import copy
import json

import pytest
import torch
import transformers

from aiayn.decode.sample import generate
from aiayn.interop.hf import from_pretrained
from tests.interop.conftest import PAD, VOCAB, save

SMALL = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention
    max_position_embeddings=128,
    pad_token_id=PAD,
    bos_token_id=None,
    eos_token_id=None,
)
FAMILIES = {
    # Llama 3's RoPE scaling, over an original context short enough that the test's
    # positions reach the stretched and the interpolated wavelengths
    "llama": lambda: transformers.LlamaConfig(
        **SMALL,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    # a window shorter than the prompts, and heads of 24 (not hidden_size / heads)
    "mistral": lambda: transformers.MistralConfig(**SMALL, sliding_window=6, head_dim=24),
    # biases on q, k and v, a tied output
    "qwen2": lambda: transformers.Qwen2Config(**SMALL, tie_word_embeddings=True),
}
FOR_CAUSAL_LM = {
    "llama": transformers.LlamaForCausalLM,
    "mistral": transformers.MistralForCausalLM,
    "qwen2": transformers.Qwen2ForCausalLM,
}
LENGTHS = [11, 4, 8, 1]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    torch.manual_seed(7)
    hf = FOR_CAUSAL_LM[request.param](FAMILIES[request.param]()).eval()
    with torch.no_grad():  # random biases and gains: the test must see them
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    return request.param, hf, save(hf, tmp_path_factory.mktemp(request.param))


def left_padded(seed: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of `lengths` (B, max) right-aligned, and the mask (1 at real tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), PAD)
    for row, n in enumerate(lengths):
        ids[row, ids.size(1) - n :] = torch.randint(0, PAD, (n,), generator=g)
    return ids, (ids != PAD).long()


def test_the_config_is_read_as_the_family_is(family) -> None:
    kind, _, folder = family
    cfg = from_pretrained(folder).cfg
    assert (cfg.norm, cfg.positional, cfg.activation, cfg.n_kv_heads) == (
        "rmsnorm",
        "rope",
        "swiglu",
        2,
    )
    expected = {
        "llama": dict(rope_factor=8.0, rope_base=500000.0, tie_output=False),
        "mistral": dict(attn_window=6, head_dim=24, tie_output=False),
        "qwen2": dict(qkv_bias=True, tie_output=True),
    }[kind]
    assert {k: getattr(cfg, k) for k in expected} == expected


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_logits_match_with_left_padding(family, tmp_path, dtype, atol) -> None:
    _, hf, folder = family
    if dtype != torch.float32:  # a checkpoint stored in bf16
        hf = copy.deepcopy(hf).to(dtype)
        folder = save(hf, tmp_path)
    ours = from_pretrained(folder)
    assert {p.dtype for p in ours.parameters()} == {dtype}  # loaded as stored, no fp32 copy
    ids, mask = left_padded(1, [13, 5, 9, 2])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
        logits = ours(ids, pad_mask=~mask.bool())
    real = mask.bool()
    torch.testing.assert_close(logits[real].float(), theirs[real].float(), atol=atol, rtol=0)


def test_greedy_generation_of_a_padded_batch_equals_generate(family) -> None:
    _, hf, folder = family
    ours = from_pretrained(folder)
    ids, mask = left_padded(2, LENGTHS)
    theirs = hf.generate(
        ids, attention_mask=mask, max_new_tokens=20, do_sample=False, num_beams=1, pad_token_id=PAD
    )[:, ids.size(1) :]
    steps = generate(ours, ids, 20, temperature=0.0, pad_mask=~mask.bool())
    assert torch.stack(list(steps), dim=1).tolist() == theirs.tolist()


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "rope type 'yarn'"),
        ("llama", {"hidden_act": "relu"}, "hidden_act='relu'"),
        ("llama", {"attention_bias": True}, "attention_bias=True is not supported"),
        ("llama", {"partial_rotary_factor": 0.5}, "'partial_rotary_factor' is unknown"),
        ("qwen2", {"use_sliding_window": True}, "use_sliding_window=True"),
        ("qwen2", {"layer_types": ["sliding_attention"] * 2}, "layer_types other than"),
    ],
)
def test_fields_aiayn_cannot_represent_are_refused_by_name(tmp_path, kind, change, message):
    save(FOR_CAUSAL_LM[kind](FAMILIES[kind]()), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(ValueError, match=message):
        from_pretrained(tmp_path)


def llama_tokenizer_json(path) -> None:
    """Llama 2's specials (<unk> <s> </s>, no <pad>; <s> put before every text) and words
    w3..w95."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    words = ["<unk>", "<s>", "</s>", *(f"w{i}" for i in range(3, VOCAB))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(words[:3])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(path))


def test_an_imported_llama_generates_from_the_cli_as_from_python(tmp_path, capsys) -> None:
    import aiayn
    from aiayn.cli import main
    from aiayn.data.tokenizer import TextTokenizer

    torch.manual_seed(3)
    folder = save(transformers.LlamaForCausalLM(FAMILIES["llama"]()).to(torch.bfloat16), tmp_path)
    llama_tokenizer_json(folder / "tokenizer.json")
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "run")]) == 0
    prompts = ["w5 w17 w40", "w9"]
    args = ["generate", "--model", str(tmp_path / "run"), "--temperature", "0"]
    capsys.readouterr()
    assert main([*args, "--max-new-tokens", "12", *(f"--prompt={p}" for p in prompts)]) == 0
    printed = capsys.readouterr().out.split("\n\n")[:2]
    tok = TextTokenizer.load(tmp_path / "run" / "tokenizer.json")  # with the ids imported
    assert tok.encode_prompts(prompts) == [[1, 5, 17, 40], [1, 9]]  # <s> first, as Llama's
    model = from_pretrained(folder)  # bf16, as the run directory keeps it and generate loads it
    texts = aiayn.generate(model, tok, prompts, max_new_tokens=12, temperature=0.0)
    assert printed == [p + t for p, t in zip(prompts, texts, strict=True)]
    assert any(texts)  # (a random model may end a row at once with </s>)


def test_the_published_llama_3_config_layout_is_read(tmp_path) -> None:
    """Llama-3.2-1B's config.json as published (rope_theta beside rope_scaling), smaller."""
    from aiayn.interop.hf_config import model_config, read_config

    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008], "head_dim": 16,
        "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
        "intermediate_size": 128, "max_position_embeddings": 131072, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3",
        },
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 1000,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    cfg = model_config(read_config(tmp_path))
    assert (cfg.rope_base, cfg.rope_factor, cfg.rope_original_max_len) == (500000.0, 32.0, 8192)
    assert (cfg.head_dim, cfg.n_kv_heads, cfg.tie_output, cfg.norm_eps) == (None, 2, True, 1e-5)
