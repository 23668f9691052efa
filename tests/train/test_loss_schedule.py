import pytest
import torch
import torch.nn.functional as F

from aiayn.config import TrainConfig
from aiayn.train import loss as loss_module
from aiayn.train.loss import label_smoothed_loss, rdrop_kl
from aiayn.train.optim import make_schedule
from aiayn.train.schedule import Horizon, noam, warmup_cosine


def test_label_smoothed_loss_matches_torch_cross_entropy():
    logits, target = torch.randn(3, 5, 11), torch.randint(1, 11, (3, 5))
    target[0, 3:] = 0
    loss, nll = label_smoothed_loss(logits, target, 0.1, pad_id=0)
    flat_logits, flat_target = logits.view(-1, 11), target.view(-1)
    ref = F.cross_entropy(
        flat_logits, flat_target, ignore_index=0, label_smoothing=0.1, reduction="sum"
    )
    ref_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=0, reduction="sum")
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, ref_nll)


@pytest.mark.parametrize("rows_per_block", [None, 5], ids=["one block", "blocks of 5 rows"])
def test_loss_gradients_match_torch_cross_entropy_and_gradcheck(rows_per_block, monkeypatch):
    if rows_per_block:  # walk the 24 rows in 5 blocks, as large logits are walked
        monkeypatch.setattr(loss_module, "CPU_BLOCK_ELEMENTS", rows_per_block * 13)
    logits = torch.randn(4, 6, 13, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 13, (4, 6))
    target[1, 2:] = 0
    loss, nll = label_smoothed_loss(logits, target, 0.1, pad_id=0)
    (2.0 * loss + 0.5 * nll).backward()  # both outputs carry gradient
    ref = logits.detach().clone().requires_grad_(True)
    kw = {"ignore_index": 0, "reduction": "sum"}
    ref_loss = F.cross_entropy(ref.view(-1, 13), target.view(-1), label_smoothing=0.1, **kw)
    (2.0 * ref_loss + 0.5 * F.cross_entropy(ref.view(-1, 13), target.view(-1), **kw)).backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    assert torch.autograd.gradcheck(
        lambda z: label_smoothed_loss(z, target, 0.2, pad_id=0), (logits.detach().requires_grad_(),)
    )


def test_bf16_logits_give_the_float32_loss_and_a_bf16_gradient():
    logits = torch.randn(2, 3, 9).to(torch.bfloat16).requires_grad_(True)
    target = torch.randint(1, 9, (2, 3))
    loss, _ = label_smoothed_loss(logits, target, 0.1, pad_id=0)
    assert loss.dtype == torch.float32
    expected, _ = label_smoothed_loss(logits.detach().float(), target, 0.1, pad_id=0)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


def test_padding_targets_do_not_count():
    logits, target = torch.randn(1, 4, 7), torch.tensor([[3, 4, 0, 0]])
    loss, _ = label_smoothed_loss(logits, target, 0.1, pad_id=0)
    changed = logits.clone()
    changed[0, 2:] = torch.randn(2, 7) * 10
    torch.testing.assert_close(loss, label_smoothed_loss(changed, target, 0.1, pad_id=0)[0])


def test_noam_is_the_papers_formula_and_peaks_at_warmup():
    rate = noam(512, 4000)
    for step in (1, 100, 4000, 10000):
        assert rate(step) == pytest.approx(512**-0.5 * min(step**-0.5, step * 4000**-1.5))
    assert rate(4000) > rate(3999) and rate(4000) > rate(4001)


def test_warmup_cosine_rises_then_decays_to_the_floor():
    rate = warmup_cosine(10, 110, floor=0.1)
    assert rate(0) == pytest.approx(0.1) and rate(9) == pytest.approx(1.0)
    assert rate(60) == pytest.approx(0.55)
    assert rate(110) == pytest.approx(0.1) and rate(500) == pytest.approx(0.1)


def test_a_binding_time_budget_ends_the_cosine_where_the_run_ends():
    horizon = Horizon(max_steps=1000, max_minutes=1.0)
    rate = warmup_cosine(10, horizon, floor=0.1)
    free = warmup_cosine(10, 1000, floor=0.1)
    horizon.update(step=100, elapsed=1.0)  # 100 steps a second: the budget does not bind
    assert horizon.steps == 1000 and rate(500) == free(500)
    horizon.update(step=100, elapsed=30.0)  # 200 steps in the minute
    assert horizon.steps == 200
    assert rate(200) == pytest.approx(0.1) and rate(105) == pytest.approx(free(505))
    horizon.update(step=300, elapsed=61.0)  # past the prediction: never behind the run
    assert horizon.steps == 300
    untimed = Horizon(max_steps=1000)
    untimed.update(step=100, elapsed=3600.0)
    assert untimed.steps == 1000


def test_the_cosine_floor_comes_from_train_lr_floor():
    t = TrainConfig(schedule="cosine", lr=1e-3, warmup=10, max_steps=110, lr_floor=0.0)
    rate = make_schedule(t, d_model=128)
    assert rate(60) == pytest.approx(0.5) and rate(110) == 0.0
    with pytest.raises(ValueError, match=r"train.lr_floor.*-0.1.*in \[0, 1\]"):
        TrainConfig(lr_floor=-0.1)


@pytest.mark.parametrize("rows_per_block", [None, 4], ids=["one block", "blocks of 4 rows"])
def test_rdrop_kl_matches_torch_kl_div_both_ways_and_gradcheck(rows_per_block, monkeypatch):
    if rows_per_block:
        monkeypatch.setattr(loss_module, "CPU_BLOCK_ELEMENTS", rows_per_block * 11)
    logits = torch.randn(2 * 3, 5, 11, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(3, 5) > 0.3
    logp, logq = logits.log_softmax(-1).chunk(2)
    one_way = F.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)  # KL(p||q)
    other_way = F.kl_div(logp, logq, log_target=True, reduction="none").sum(-1)  # KL(q||p)
    ref = (0.5 * (one_way + other_way) * keep).sum()
    torch.testing.assert_close(rdrop_kl(logits, keep), ref)
    assert torch.autograd.gradcheck(lambda z: rdrop_kl(z, keep), (logits,))
    same = logits.detach()[:3].repeat(2, 1, 1)
    assert rdrop_kl(same, keep) == 0


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_columns_give_the_loss_of_the_unmasked_vocabulary(eps):
    """-inf logits (column 0 among them) are outside the vocabulary: the loss and gradient are
    F.cross_entropy's over the other columns, finite, where reading column 0 gave NaN."""
    z = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    masked = torch.tensor([True, False, False, False, True, False, False])
    target = torch.tensor([[1, 2, 3], [5, 6, 0]])  # 0: padding (a masked column)
    loss, nll = label_smoothed_loss(z.masked_fill(masked, float("-inf")), target, eps, 0)
    (loss + nll).backward()
    keep = target.reshape(-1) != 0
    kept_z = z[..., ~masked].reshape(-1, 5)[keep]
    kept_target = (torch.cumsum(~masked, 0) - 1)[target.reshape(-1)[keep]]
    ref = F.cross_entropy(kept_z, kept_target, label_smoothing=eps, reduction="sum")
    ref_nll = F.cross_entropy(kept_z, kept_target, reduction="sum")
    ours = z.grad.clone()
    z.grad = None
    (ref + ref_nll).backward()
    assert torch.allclose(loss, ref) and torch.allclose(nll, ref_nll)
    assert torch.allclose(ours, z.grad) and torch.isfinite(ours).all()
    assert (ours[..., masked] == 0).all()
    if eps == 0:  # without smoothing F.cross_entropy takes the masked logits as they are
        direct = F.cross_entropy(
            z.masked_fill(masked, float("-inf")).reshape(-1, 7)[keep],
            target.reshape(-1)[keep],
            reduction="sum",
        )
        assert torch.allclose(loss, direct)


def test_rdrop_kl_is_finite_with_columns_masked_in_both_passes():
    z = torch.randn(4, 6).masked_fill(
        torch.tensor([True, False, False, True, False, False]), -torch.inf
    )
    z.requires_grad_(True)
    kl = rdrop_kl(z, torch.ones(2))
    kl.backward()
    assert torch.isfinite(kl) and torch.isfinite(z.grad).all()
