"""Model code is built from torch primitives: no ready-made Transformer parts outside interop/.

Fused kernels of single operations (`F.scaled_dot_product_attention`, `F.layer_norm`) are
primitives; each runs beside a written-out path that the tests prove equal."""

import ast
from pathlib import Path

import aiayn

PACKAGE = Path(aiayn.__file__).parent
FORBIDDEN_ATTRS = {
    "Transformer",
    "TransformerEncoder",
    "TransformerDecoder",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "MultiheadAttention",
    "multi_head_attention_forward",
    "LayerNorm",
    "RMSNorm",
}
FORBIDDEN_MODULES = ("transformers",)


def violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            found.append(f"{path.name}:{node.lineno} uses .{node.attr}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES or name in FORBIDDEN_ATTRS:
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_no_ready_made_transformer_modules_outside_interop():
    files = [p for p in PACKAGE.rglob("*.py") if "interop" not in p.parts]
    assert len(files) > 10
    assert [v for p in files for v in violations(p)] == []


def test_the_checker_catches_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import torch\nfrom transformers import BertModel\nx = torch.nn.MultiheadAttention(4, 2)\n"
    )
    assert len(violations(bad)) == 2
