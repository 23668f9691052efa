"""Hugging Face checkpoints, built from random-initialised configs, against aiayn's import."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aiayn.data.parallel import pad_to_tensor
from aiayn.decode.sample import generate
from aiayn.decode.search import Special, greedy
from aiayn.interop.hf import from_pretrained
from tests.interop.conftest import PAD, char_tokenizer_json, save, word_tokenizer_json


def padded_batch(seed: int, lengths: list[int], low: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(low, PAD, (n,), generator=g).tolist() for n in lengths]
    ids = pad_to_tensor(rows, PAD)
    return ids, (ids != PAD).long()


def test_bert_hidden_states_match_with_padding(bert) -> None:
    hf, folder = bert
    hf.config.pad_token_id = PAD
    save(hf, folder)
    ours = from_pretrained(folder)
    ids, mask = padded_batch(0, [12, 7, 3])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        h, _ = ours.hidden_states(ids)
    real = mask.bool()
    torch.testing.assert_close(h[real], theirs[real], atol=1e-4, rtol=0)


def test_gpt2_logits_match_with_padding(gpt2) -> None:
    hf, folder = gpt2
    ours = from_pretrained(folder)
    ids, mask = padded_batch(1, [20, 9, 14])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
        logits = ours(ids)
    real = mask.bool()
    torch.testing.assert_close(logits[real], theirs[real], atol=1e-4, rtol=0)


def test_gpt2_greedy_generation_matches_generate(gpt2) -> None:
    hf, folder = gpt2
    ours = from_pretrained(folder)
    for seed, length in enumerate([3, 6, 10, 1]):
        prompt, _ = padded_batch(10 + seed, [length])
        theirs = hf.generate(
            prompt, max_new_tokens=20, do_sample=False, num_beams=1, pad_token_id=PAD
        )[0, length:]
        mine = torch.stack(list(generate(ours, prompt, 20, temperature=0.0)), dim=1)[0]
        assert mine.tolist() == theirs.tolist()


def test_marian_logits_match_with_padding(marian) -> None:
    hf, folder = marian
    ours = from_pretrained(folder)
    src, src_mask = padded_batch(2, [11, 5, 8])
    tgt, tgt_mask = padded_batch(3, [6, 9, 2])
    tgt[:, 0] = PAD  # decoding starts from the pad token, as Marian's decoder_start_token_id
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits
        logits = ours(src, tgt)
    real = tgt_mask.bool()
    real[:, 0] = True
    torch.testing.assert_close(logits[real], theirs[real], atol=1e-4, rtol=0)


def test_marian_greedy_translation_matches_generate(marian) -> None:
    hf, folder = marian
    ours = from_pretrained(folder)
    src, mask = padded_batch(4, [7, 12, 4, 9])
    src = torch.where(mask.bool(), src, PAD)
    src[torch.arange(4), mask.sum(1) - 1] = 0  # each source ends with </s> (id 0)
    theirs = hf.generate(src, attention_mask=mask, max_new_tokens=20, num_beams=1, do_sample=False)
    special = Special(bos=PAD, eos=0, pad=PAD)
    mine = greedy(ours, src, special, max_extra=1000, cap=20)
    checked = []
    for row, tokens in zip(theirs.tolist(), mine, strict=True):
        expected = [t for t in row[1:] if t != PAD]
        expected = expected[: expected.index(0)] if 0 in expected else expected
        assert tokens == expected
        checked.append(len(tokens))
    assert sum(checked) > 20  # most sentences decode for a while before </s>


def test_missing_extra_and_misshapen_tensors_are_named(gpt2, tmp_path) -> None:
    _, folder = gpt2
    tensors = load_file(str(folder / "model.safetensors"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())

    def broken(change) -> None:
        state = dict(tensors)
        change(state)
        save_file(state, str(tmp_path / "model.safetensors"))

    broken(lambda s: s.pop("transformer.h.1.ln_2.weight"))
    with pytest.raises(ValueError, match=r"transformer.h.1.ln_2.weight is missing"):
        from_pretrained(tmp_path)
    broken(lambda s: s.update({"transformer.h.0.attn.rotary": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"transformer.h.0.attn.rotary is unexpected"):
        from_pretrained(tmp_path)
    broken(lambda s: s.update({"transformer.wpe.weight": torch.zeros(10, 48)}))
    with pytest.raises(ValueError, match=r"transformer.wpe.weight has shape \(10, 48\)"):
        from_pretrained(tmp_path)


def test_unknown_model_type_is_named(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="model_type 't5' is not supported"):
        from_pretrained(tmp_path)


def test_import_hf_writes_a_run_that_generate_uses(gpt2, tmp_path, capsys) -> None:
    from aiayn.cli import main

    hf, folder = gpt2
    char_tokenizer_json(folder / "tokenizer.json")
    out = tmp_path / "run"
    assert main(["import-hf", str(folder), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "config.toml",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer.ids.json",
    }
    capsys.readouterr()
    args = ["generate", "--model", str(out), "--prompt", "Hi", "--temperature", "0"]
    assert main([*args, "--max-new-tokens", "20"]) == 0
    text = capsys.readouterr().out
    prompt = torch.tensor([[ord("H") - 31, ord("i") - 31]])
    ids = hf.generate(prompt, max_new_tokens=20, do_sample=False, bad_words_ids=[[0]])
    assert text == "Hi" + "".join(chr(i + 31) for i in ids[0, 2:].tolist()) + "\n"


def test_import_hf_marian_run_translates_like_generate(marian, tmp_path, capsys) -> None:
    from aiayn.cli import main

    hf, folder = marian
    words = word_tokenizer_json(folder / "tokenizer.json", pad=PAD, eos=0)
    out = tmp_path / "run"
    assert main(["import-hf", str(folder), "--out", str(out)]) == 0
    sentence = [5, 17, 42, 8, 77, 3]
    (tmp_path / "in.txt").write_text(" ".join(words[i] for i in sentence) + "\n")
    capsys.readouterr()
    args = ["translate", "--model", str(out), "--beam", "1", "--input", str(tmp_path / "in.txt")]
    assert main(args) == 0
    mine = capsys.readouterr().out.strip()
    limit = len(sentence) + 1 + 50  # aiayn's default: source length + 50 (paper §6.1)
    theirs = hf.generate(torch.tensor([[*sentence, 0]]), max_new_tokens=limit, num_beams=1)[0]
    expected = [t for t in theirs[1:].tolist() if t not in (0, PAD)]
    assert mine == " ".join(words[t] for t in expected)
    assert len(expected) > 3


class Exploit:
    marker: Path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pytorch_model_bin_loads_without_running_pickled_code(gpt2, tmp_path) -> None:
    import pickle

    hf, folder = gpt2
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    torch.save(load_file(str(folder / "model.safetensors")), tmp_path / "pytorch_model.bin")
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        ours = from_pretrained(tmp_path)(ids)
        torch.testing.assert_close(ours, hf(ids).logits, atol=1e-4, rtol=0)
    Exploit.marker = tmp_path / "pwned"
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"transformer.wte.weight": Exploit()}, f)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: refused or unreadable"):
        from_pretrained(tmp_path)
    assert not Exploit.marker.exists()


def test_a_transposed_matrix_of_the_right_size_is_still_refused(gpt2, tmp_path) -> None:
    _, folder = gpt2
    tensors = load_file(str(folder / "model.safetensors"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    tensors["transformer.h.0.mlp.c_fc.weight"] = tensors["transformer.h.0.mlp.c_fc.weight"].t()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"transformer.h.0.mlp.c_fc.weight has shape \(48, 192\)"):
        from_pretrained(tmp_path)


def test_from_pretrained_runs_attention_by_a_runs_default_path(bert) -> None:
    from aiayn.config import TrainConfig
    from aiayn.nn.attention import MultiHeadAttention
    from aiayn.runtime.attention import KERNELS

    hf, folder = bert
    save(hf, folder)
    ours = from_pretrained(folder)
    kernels = {m.kernel for m in ours.modules() if isinstance(m, MultiHeadAttention)}
    assert kernels == {KERNELS[TrainConfig().attn_impl]}
