"""A decoding step's linear layers by MKL from (in, out) weights (`input_major_linear`) against
oneDNN from its blocked layout (`onednn_linear`): the measurement behind
`aiayn.decode.weights.onednn_pays`. Shapes of a Marian-base decoder (d_model 512, d_ff 2,048,
8,000 tokens) at 32 and 160 rows (a batch of 32 sentences, beam 5), and of the Multi30k model
(d_model 128) at 1,650 rows. Prints JSON: seconds per call and onednn / mkl.

`python -m benchmarks.onednn_linear`
"""

from __future__ import annotations

from functools import partial

import torch

from aiayn.decode.weights import input_major_linear, onednn_linear
from benchmarks.common import interleaved, report

SHAPES = [  # (rows, in, out)
    *(
        (m, k, n)
        for m in (32, 160)
        for k, n in ((512, 1536), (512, 512), (512, 2048), (2048, 512), (512, 8000))
    ),
    (1650, 128, 384),
    (1650, 128, 8000),
]


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for m, k, n in SHAPES:
        x, w, b = torch.randn(m, k), torch.randn(n, k) / k**0.5, torch.randn(n)
        w_t, packed = w.t().contiguous(), torch.ops.mkldnn._reorder_linear_weight(w, 160)
        calls = {
            "mkl": partial(input_major_linear, x, w_t, b),
            "onednn": partial(onednn_linear, x, packed, b),
        }
        s = interleaved(calls, max(5, int(2e9 / (m * k * n))))
        rows.append(
            {"rows": m, "in": k, "out": n, **s, "onednn/mkl": round(s["onednn"] / s["mkl"], 3)}
        )
        print(rows[-1], flush=True)
    report({"benchmark": "onednn_linear", "rows": rows})


if __name__ == "__main__":
    main()
