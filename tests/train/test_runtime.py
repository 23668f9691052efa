"""How training runs on a machine: precision and its gradient scaler, TF32, compilation, the
optimizer's fused kernel and which tensors weight decay shrinks."""

import pytest
import torch
from torch import nn

from aiayn.config import TrainConfig
from aiayn.models import ModelConfig, build_model
from aiayn.train.optim import apply_hyperparameters, make_optimizer, make_schedule
from aiayn.train.runtime import Precision, allow_tf32, check_scaler_state, compiled
from aiayn.train.state import check_state, new_state

CPU = torch.device("cpu")


def test_fp16_scales_the_loss_and_an_overflow_lowers_the_scale_without_a_step():
    model = nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    p = Precision("fp16", CPU)
    with p.autocast():
        out = model(torch.randn(4, 8))
    assert out.dtype == torch.float16
    p.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 gradients overflow
    before = model.weight.detach().clone()
    p.backward(out.float().square().sum())
    p.unscale(opt)
    assert not torch.isfinite(model.weight.grad).all()
    assert p.skip() and p.scaler.get_scale() == 2.0**99
    assert torch.equal(model.weight, before)
    opt.zero_grad()
    p.backward(model(torch.randn(4, 8)).square().sum())  # fp32 now: finite
    p.unscale(opt)
    p.step(opt)
    assert not torch.equal(model.weight, before)


def test_bf16_and_fp32_have_no_scaler():
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        p = Precision(name, CPU)
        with p.autocast():
            assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == dtype
        assert p.scaler is None and not p.skip() and p.state_dict() == {}


@pytest.mark.parametrize(
    "state, ok",
    [
        ({}, True),
        (Precision("fp16", CPU).state_dict(), True),
        ({**Precision("fp16", CPU).state_dict(), "scale": -1.0}, False),
        ({**Precision("fp16", CPU).state_dict(), "scale": "big"}, False),
        ({"scale": 1.0}, False),
        ([1.0], False),
    ],
)
def test_a_saved_scaler_state_is_checked_before_use(state, ok, tmp_path):
    assert (check_scaler_state(state) is None) is ok
    full = {**new_state(), "model": {}, "optimizer": {}, "scheduler": {}, "scaler": state}
    full.update(rng_torch=[torch.get_rng_state()], rng_cuda=[])
    if ok:
        assert check_state(full, tmp_path / "s.pt") is full
    else:
        with pytest.raises(ValueError, match="field 'scaler'"):
            check_state(full, tmp_path / "s.pt")


def test_tf32_is_left_alone_off_gpus():
    before = torch.backends.cuda.matmul.allow_tf32
    allow_tf32(CPU)
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_compile_wraps_the_forward_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda m, **kw: ("compiled", m, kw))
    m = nn.Linear(2, 2)
    assert compiled(m, False) is m and compiled(m, True) == ("compiled", m, {"fullgraph": True})
    assert compiled(m, True, single=False) == ("compiled", m, {"fullgraph": False})


def test_the_fused_optimizer_is_chosen_for_cuda_only():
    model = nn.Linear(4, 4)
    t = TrainConfig(optimizer="adamw")
    assert make_optimizer(model, t, 4, torch.device("cuda")).defaults["fused"] is True
    assert not make_optimizer(model, t, 4, CPU).defaults["fused"]


def test_matrices_decay_spares_biases_norm_gains_and_embeddings():
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1, vocab_size=40,
                      positional="learned", max_len=8)  # fmt: skip
    model = build_model(cfg)
    t = TrainConfig(optimizer="adamw", weight_decay=0.1, decay="matrices")
    opt = make_optimizer(model, t, cfg.d_model)
    decayed, spared = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".weight" in names[id(p)] and p.dim() == 2 for p in decayed["params"])
    spared_names = {names[id(p)] for p in spared["params"]}
    assert any("embed" in n for n in spared_names) and any("bias" in n for n in spared_names)
    assert any("norm" in n for n in spared_names)
    assert not any("embed" in names[id(p)] for p in decayed["params"])
    everything = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())  # each once
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.1, 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_schedule(t, 16))
    apply_hyperparameters(opt, sched, TrainConfig(optimizer="adamw", weight_decay=0.3), 16)
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.3, 0.0)  # kept on resume
    assert len(make_optimizer(model, TrainConfig(weight_decay=0.1), 16).param_groups) == 1
