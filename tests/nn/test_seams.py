"""The paper's modules know decoding and the runtime only through the seams they take."""

import ast
from pathlib import Path

import torch

import aiayn
from aiayn.nn.attention import SelfAttention, written_out
from aiayn.nn.masks import attention_mask
from aiayn.runtime.attention import KERNELS, use_attention

SRC = Path(aiayn.__file__).parent


def imported(path: Path) -> set[str]:
    """The modules a file imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_papers_modules_import_nothing_of_decoding_or_the_runtime():
    for path in [*(SRC / "nn").glob("*.py"), *(SRC / "models").glob("*.py")]:
        outside = {m for m in imported(path) if m.startswith(("aiayn.decode", "aiayn.runtime"))}
        assert not outside, (path.name, outside)


def test_attention_runs_the_kernel_it_is_given():
    calls = []

    def kernel(q, k, v, mask, dropout_p, scale):
        calls.append((q.shape, k.shape, mask is None, dropout_p, scale))
        return written_out(q, k, v, mask, dropout_p, scale)

    mha = SelfAttention(16, 4, scale_scores=False, kernel=kernel)
    x = torch.randn(2, 5, 16)
    mask = attention_mask(5, 5, causal=True)
    out = mha(x, mask)
    assert calls == [((2, 4, 5, 4), (2, 4, 5, 4), False, 0.0, 1.0)]
    mha.kernel = written_out
    assert torch.equal(out, mha(x, mask))


def test_a_module_runs_the_written_out_equation_until_the_run_chooses():
    mha = SelfAttention(16, 4)
    assert mha.kernel is written_out
    for impl, kernel in KERNELS.items():
        use_attention(mha, impl)
        assert mha.kernel is kernel
