"""int8 decoding on a CPU: every nn.Linear of a loaded model replaced by its dynamically
quantized twin (int8 weights, a scale per output row; activations quantized per batch on the fly;
fbgemm's int8 products, oneDNN's for an output layer over a vocabulary on AMD CPUs), the
embeddings and norms left in fp32.

torch's eager quantization API that this uses (`torch.ao.quantization.quantize_dynamic`) is
deprecated in favour of torchao; it still ships with torch 2.13 and needs no other package, so
its deprecation warnings are silenced here, in the one place that calls it. On a Multi30k run
(d_model 128) it keeps BLEU within 0.1; its beam search ran 1.01-1.30x as fast as fp32 (the
matrices are small), on a Marian-base shape 1.5-1.8x (2-core AMD EPYC, docs/speed-ct2.md).

The int8 model is saved without pickle, as `int8.safetensors`: for each linear layer
`NAME.weight` (int8), `NAME.scale` (float32, one per output row; zero point 0) and `NAME.bias`, and
every other tensor as the float model has it. The header names the format and its version.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from aiayn.decode.weights import on_amd
from aiayn.nn.feedforward import FeedForward, GatedFeedForward
from aiayn.run.files import (
    INT8,
    pick_weights,
)
from aiayn.run.weights import SafetensorsFile, check_tensors, save_tensors, unique_state

FORMAT, VERSION = "aiayn-int8", "1"  # in the file's safetensors metadata
# one scale per output row: on the README's Multi30k model, one per matrix cost 0.40 BLEU
PER_CHANNEL = torch.ao.quantization.per_channel_dynamic_qconfig


def quantize_int8(model: nn.Module) -> nn.Module:
    """`model` (on the CPU) with int8 linear layers, for decoding only."""
    return onednn_wide(_dynamic(model))


def _dynamic(model: nn.Module) -> nn.Module:
    """`model` with every nn.Linear torch's dynamic int8 twin, packed by torch's engine."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"--int8 decodes on a CPU; the model is on {device}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        quantized = torch.ao.quantization.quantize_dynamic(
            model.eval(), {nn.Linear: PER_CHANNEL}, dtype=torch.qint8
        )
    return quantized


# An output layer over a vocabulary: for 160 rows of 512 inputs and 8,000 outputs fbgemm's int8
# product took 2.2-3.6 ms, oneDNN's 1.7-1.9 ms; at 512-2,048 outputs oneDNN was no faster
# (2-core AMD EPYC). Beam search: 1.02x on runs/m30k-short (0.98-1.08 over 6 rounds, the same
# translations), 1.015x on a Marian-base shape (0.97-1.10 over 8)
ONEDNN_OUT_FROM = 4096
FEED_FORWARDS = (FeedForward, GatedFeedForward)


def onednn_wide(model: nn.Module) -> nn.Module:
    """`model` with its int8 layers of at least ONEDNN_OUT_FROM outputs, but a feed-forward
    net's first, packed for oneDNN's int8 product, on AMD CPUs (measured there only)."""
    if not on_amd() or "onednn" not in torch.backends.quantized.supported_engines:
        return model
    # a feed-forward net's first layer stays fbgemm's: decoding has its kernel apply the ReLU
    # (aiayn.decode.weights), and oneDNN's int8 product with a ReLU gave other numbers
    hidden = {id(ff.w_in) for ff in model.modules() if isinstance(ff, FEED_FORWARDS)}
    wide = [
        m
        for m in int8_layers(model).values()
        if m.out_features >= ONEDNN_OUT_FROM and id(m) not in hidden
    ]
    engine = torch.backends.quantized.engine  # packing follows the engine set when it runs
    torch.backends.quantized.engine = "onednn"
    try:
        for layer in wide:
            layer.set_weight_bias(*layer._weight_bias())
    finally:
        torch.backends.quantized.engine = engine
    return model


def is_int8(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


def refuse_int8(run_dir: str | Path) -> None:
    """For exports, which write float weights."""
    if pick_weights(Path(run_dir)).name == INT8:
        raise ValueError(f"{run_dir} holds int8 weights (aiayn quantize); export its float run")


def int8_layers(model: nn.Module) -> dict[str, Int8Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, Int8Linear)}


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors outside the int8 layers, each shared one (tied embeddings) once."""
    return unique_state(model, skip=tuple(f"{name}." for name in int8_layers(model)))


def int8_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the int8 `model`, as `int8.safetensors` holds them."""
    state = float_state(model)
    for name, layer in int8_layers(model).items():
        weight, bias = layer._weight_bias()
        if weight.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric) or (
            weight.q_per_channel_axis() != 0 or weight.q_per_channel_zero_points().any()
        ):
            raise ValueError(f"layer {name}: expected a scale per output row, zero point 0")
        state[f"{name}.weight"] = weight.int_repr().contiguous()
        state[f"{name}.scale"] = weight.q_per_channel_scales().float().contiguous()
        if bias is not None:
            state[f"{name}.bias"] = bias.detach().float().contiguous()
    return state


def save_int8(model: nn.Module, path: str | Path, source: str) -> None:
    """Write the int8 `model` to `path`; `source` names the float weights it came from."""
    meta = {"format": FORMAT, "version": VERSION, "source": source}
    save_tensors(int8_state(model), path, metadata=meta)


def load_int8(model: nn.Module, path: str | Path) -> nn.Module:
    """The float `model`'s int8 twin with the tensors of `path`, each checked first: the
    format and version, every name, shape and dtype, finite values, positive scales."""
    tensors = SafetensorsFile(Path(path))
    meta = tensors.metadata
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = f"format {meta.get('format')!r} version {meta.get('version')!r}"
        raise ValueError(f"{path}: {found}; expected {FORMAT!r} version {VERSION!r}")
    quantized = _dynamic(model)  # packed once more as the file's weights are set
    layers = int8_layers(quantized)
    floats = {n: t.shape for n, t in float_state(quantized).items()}
    wanted = set(floats) | {f"{n}.{part}" for n in layers for part in ("weight", "scale")}
    wanted |= {f"{n}.bias" for n, layer in layers.items() if layer.bias() is not None}
    extra = sorted(set(tensors) - wanted)
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]!r}")
    check_tensors({n: tensors[n] for n in floats if n in tensors}, floats, path)
    targets = quantized.state_dict(keep_vars=True)  # load_state_dict wants every int8 scale
    with torch.no_grad():
        for name in floats:
            targets[name].copy_(tensors[name])
    for name, layer in layers.items():
        layer.set_weight_bias(*int8_weight(tensors, name, layer, path))
    return onednn_wide(quantized)


# quantize_dynamic's observer never gives a scale below float32's epsilon (a row of zeros
# gets that one); a denormal or tiny scale makes every output zero, and one past MAX_SCALE
# would stand for weights of over 10^8
MIN_SCALE, MAX_SCALE = torch.finfo(torch.float32).eps, 1e6


def int8_weight(
    tensors: SafetensorsFile, name: str, layer: Int8Linear, path: str | Path
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Layer `name`'s quantized weight and float bias from `tensors`, checked."""
    shape = (layer.out_features, layer.in_features)
    for part in ("weight", "scale", *(("bias",) if layer.bias() is not None else ())):
        if f"{name}.{part}" not in tensors:
            raise ValueError(f"{path}: tensor '{name}.{part}' is missing")
    weight, scale = tensors[f"{name}.weight"], tensors[f"{name}.scale"]
    if weight.dtype != torch.int8 or tuple(weight.shape) != shape:
        raise ValueError(
            f"{path}: tensor '{name}.weight' is {weight.dtype} {tuple(weight.shape)}; "
            f"expected torch.int8 {shape}"
        )
    if scale.dtype != torch.float32 or tuple(scale.shape) != shape[:1]:
        raise ValueError(
            f"{path}: tensor '{name}.scale' is {scale.dtype} {tuple(scale.shape)}; "
            f"expected torch.float32 {shape[:1]}, a scale per output row"
        )
    sane = (scale >= MIN_SCALE) & (scale <= MAX_SCALE)  # False for NaN
    if not bool(sane.all()):
        bad = scale[~sane][0].item()
        raise ValueError(
            f"{path}: tensor '{name}.scale' holds {bad:g}; expected scales from "
            f"{MIN_SCALE:g} to {MAX_SCALE:g}"
        )
    bias = None
    if layer.bias() is not None:
        bias = tensors[f"{name}.bias"]
        check_tensors({"bias": bias}, {"bias": torch.Size([shape[0]])}, f"{path}: {name}")
        bias = bias.float()
    zeros = torch.zeros(shape[0], dtype=torch.long)
    return torch._make_per_channel_quantized_tensor(weight, scale.double(), zeros, 0), bias
