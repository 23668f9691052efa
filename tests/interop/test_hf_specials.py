"""What a checkpoint's own files say about generation, kept by `import-hf`: a Llama 3-style
checkpoint with two end ids in generation_config.json, special tokens whose names aiayn does
not know and no unknown word; the run stops where `transformers`' generate stops."""

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from aiayn.cli import main
from aiayn.data.tokenizer import TextTokenizer
from tests.interop.conftest import VOCAB

TEMPLATE = "{% for m in messages %}<|bos|>{{ m['content'] }}<|eot|>{% endfor %}"
PROMPT = [0, 5, 6, 7]  # <|bos|> w5 w6 w7


def tokenizer(path, names: dict[int, str]) -> None:
    """Words w0..w95, the ids of `names` renamed as special tokens; <|bos|> before a text."""
    words = [names.get(i, f"w{i}") for i in range(VOCAB)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, names[0]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(names.values()))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{names[0]} $A", special_tokens=[(names[0], 0)]
    )
    tok.save(str(path))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random bf16 Llama whose second end id is the 4th token its greedy search gives."""
    folder = tmp_path_factory.mktemp("llama3")
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(5)
    hf = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    free = hf.generate(
        torch.tensor([PROMPT]), max_new_tokens=8, do_sample=False, eos_token_id=None
    )[0, len(PROMPT) :].tolist()
    end, eot = next(i for i in range(1, VOCAB) if i not in free), free[3]
    assert eot not in free[:3] and 0 not in free[:3]
    hf.generation_config.eos_token_id = [end, eot]  # Llama 3: <|end_of_text|>, <|eot_id|>
    hf.save_pretrained(folder)
    tokenizer(folder / "tokenizer.json", {0: "<|bos|>", end: "<|end|>", eot: "<|eot|>"})
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    return folder, hf, (end, eot), free


def test_a_checkpoint_without_unk_imports_its_end_ids_and_template(checkpoint, tmp_path):
    folder, _, ends, _ = checkpoint
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "run")]) == 0
    tok = TextTokenizer.load(tmp_path / "run" / "tokenizer.json")
    assert (tok.bos_id, tok.end_ids, tok.unk_id, tok.pad_id) == (0, ends, None, ends[0])
    assert (tmp_path / "run" / "chat_template.jinja").read_text() == TEMPLATE


def test_generation_stops_at_either_end_id_as_transformers_does(checkpoint, tmp_path, capsys):
    folder, hf, ends, free = checkpoint
    assert main(["import-hf", str(folder), "--out", str(tmp_path / "run")]) == 0
    # transformers with the checkpoint's own generation config: stops at the second end id
    out = hf.generate(torch.tensor([PROMPT]), max_new_tokens=8, do_sample=False)
    assert out[0, len(PROMPT) :].tolist() == [*free[:3], ends[1]]
    capsys.readouterr()
    args = ["generate", "--model", str(tmp_path / "run"), "--temperature", "0"]
    assert main([*args, "--max-new-tokens", "8", "--prompt=w5 w6 w7"]) == 0
    printed = capsys.readouterr().out.split("\n\n")[0].rstrip("\n")
    assert printed == "w5 w6 w7 " + " ".join(f"w{i}" for i in free[:3])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"eos_token_id": [1, VOCAB]}, "eos_token_id=\\[1, 96\\] is not a token id"),
        ({"eos_token_id": "</s>"}, "eos_token_id='</s>' is not a token id"),
        ({"eos_token_id": list(range(65))}, "a list of 1 to 64"),
        ({"bos_token_id": True}, "bos_token_id=True is not a token id"),
    ],
)
def test_bad_ids_in_generation_config_are_refused_by_name(checkpoint, tmp_path, change, message):
    folder, *_ = checkpoint
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    gen = json.loads((bad / "generation_config.json").read_text())
    (bad / "generation_config.json").write_text(json.dumps(gen | change))
    with pytest.raises(ValueError, match=message):
        from aiayn.interop.hf_run import import_run

        import_run(bad, tmp_path / "run", log=lambda _: None)
