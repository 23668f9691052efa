"""Label-smoothed cross-entropy (paper §5.4, Szegedy et al. 2016), padding ignored; R-Drop's KL.

The smoothed target puts 1 - eps on the true token and spreads eps evenly over the vocabulary:
loss = (1 - eps) * NLL + eps * mean over the vocabulary of -log p. Its gradient is softmax(z)
minus the smoothed target. Written as one autograd function that walks the (N, V) logits in
blocks of rows small enough to stay in cache, keeping only each row's log-sum-exp: the loss
of a small translation model is a quarter of its step when computed over the whole tensor.
A column whose logit is -inf (masked) lies outside the vocabulary: smoothing spreads over
the other columns, and the loss equals F.cross_entropy's over the unmasked columns alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Logits per block: about a million (4 MB in float32) on a CPU; an accelerator gains nothing
# from cache-sized blocks, only more kernel launches, so there a block is much larger.
CPU_BLOCK_ELEMENTS = 1 << 20
ACCELERATOR_BLOCK_ELEMENTS = 1 << 28
# exp is slow on CPUs where its result is subnormal; probabilities below e^-80 (1e-35) are
# raised to it, a change far below float32's resolution of the rest.
LOG_PROB_FLOOR = -80.0


def _blocks(logits: Tensor) -> list[slice]:
    n_rows, vocab = logits.shape
    cpu = logits.device.type == "cpu"
    rows = max(1, (CPU_BLOCK_ELEMENTS if cpu else ACCELERATOR_BLOCK_ELEMENTS) // vocab)
    return [slice(s, s + rows) for s in range(0, n_rows, rows)]


class _SmoothedCrossEntropy(torch.autograd.Function):
    """(summed smoothed loss, summed NLL) of rows `keep`; logits (N, V), target and keep (N,)."""

    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, keep: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        n, vocab = logits.shape
        dtype = torch.promote_types(logits.dtype, torch.float32)
        lse, nll, uniform = (torch.empty(n, dtype=dtype, device=logits.device) for _ in range(3))
        # tokens each row smooths over: the vocabulary less its -inf (masked) columns
        support = torch.full((n,), float(vocab), dtype=dtype, device=logits.device)
        for b in _blocks(logits):
            z = logits[b].to(dtype)  # (rows, V)
            logp = z.log_softmax(-1)  # faster than logsumexp on CPU
            # read at the largest logit, which is finite whatever columns are masked
            lse[b] = z.amax(-1) - logp.amax(-1)
            nll[b] = -logp.gather(-1, target[b, None]).squeeze(-1)
            uniform[b] = -logp.mean(-1)  # mean over the vocabulary of -log p
            masked = uniform[b].isinf()
            if masked.any():  # rare: only rows with masked columns take this path
                finite = logp[masked].isfinite()
                support[b][masked] = finite.sum(-1).to(dtype)
                uniform[b][masked] = -logp[masked].where(finite, 0).sum(-1) / support[b][masked]
        nll, uniform = nll.where(keep, 0), uniform.where(keep, 0)
        ctx.save_for_backward(logits, target, keep, lse, support)
        ctx.eps = eps
        return ((1.0 - eps) * nll + eps * uniform).sum(), nll.sum()

    @staticmethod
    def backward(ctx, g_loss: Tensor, g_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logits, target, keep, lse, support = ctx.saved_tensors
        eps, vocab = ctx.eps, logits.size(-1)
        keep = keep.to(lse.dtype)[:, None]  # (N, 1)
        scale, shift = keep * (g_loss + g_nll), keep * (g_loss * eps) / support[:, None]
        hit = -keep * (g_loss * (1.0 - eps) + g_nll)
        grad = torch.empty_like(logits)
        for b in _blocks(logits):
            # d loss / dz = softmax - (1 - eps) onehot - eps / V;  d nll / dz = softmax - onehot.
            z = logits[b].to(lse.dtype)
            p = (z - lse[b, None]).clamp_(min=LOG_PROB_FLOOR).exp_()
            p.mul_(scale[b]).sub_(shift[b]).scatter_add_(-1, target[b, None], hit[b])
            masked = support[b] < vocab
            if masked.any():  # a masked column has no gradient
                p[masked] = p[masked].where(z[masked].isfinite(), 0)
            grad[b] = p
        return grad, None, None, None


def traced_smoothed_loss(
    logits: Tensor, target: Tensor, keep: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """What _SmoothedCrossEntropy computes, in torch's operations and without a branch on the
    data, for torch.compile: it traces this into the step's graph and fuses it itself, where
    the autograd function's test for masked columns would break the graph."""
    # logits: (N, V), target and keep: (N,) -> two scalars
    logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    nll = -logp.gather(-1, target[:, None]).squeeze(-1)
    finite = logp.isfinite()
    uniform = -logp.where(finite, 0).sum(-1) / finite.sum(-1)
    nll, uniform = nll.where(keep, 0), uniform.where(keep, 0)
    return ((1.0 - eps) * nll + eps * uniform).sum(), nll.sum()


def label_smoothed_loss(
    logits: Tensor, target: Tensor, epsilon: float, pad_id: int
) -> tuple[Tensor, Tensor]:
    """Summed smoothed loss and summed NLL over non-padding targets (in float32 or wider)."""
    # logits: (B, T, V), target: (B, T) -> two scalars
    target = target.reshape(-1)
    return smoothed_sums(logits.reshape(-1, logits.size(-1)), target, target != pad_id, epsilon)


def smoothed_sums(
    logits: Tensor, target: Tensor, keep: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """(summed smoothed loss, summed NLL) of the rows `keep` of (N, V) logits: the autograd
    function above, or its traced form inside torch.compile."""
    if torch.compiler.is_compiling():
        return traced_smoothed_loss(logits, target, keep, eps)
    return _SmoothedCrossEntropy.apply(logits, target, keep, eps)


class _RDropKL(torch.autograd.Function):
    """Half of KL(p||q) + KL(q||p) between rows i and N + i of (2N, V) logits, summed over the
    rows where keep (N,) is set; walked in blocks of rows, as the loss above."""

    @staticmethod
    def forward(ctx, logits: Tensor, keep: Tensor) -> Tensor:
        p_logits, q_logits = logits.chunk(2)
        n, dtype = len(p_logits), torch.promote_types(logits.dtype, torch.float32)
        lse_p, lse_q, kl_pq, kl_qp = (
            torch.empty(n, dtype=dtype, device=logits.device) for _ in range(4)
        )
        for b in _blocks(p_logits):
            zp, zq = p_logits[b].to(dtype), q_logits[b].to(dtype)  # (rows, V)
            logp, logq = zp.log_softmax(-1), zq.log_softmax(-1)
            lse_p[b], lse_q[b] = zp.amax(-1) - logp.amax(-1), zq.amax(-1) - logq.amax(-1)
            # floored before the difference, so that a column masked in both (-inf) adds 0
            logp, logq = logp.clamp_(min=LOG_PROB_FLOOR), logq.clamp_(min=LOG_PROB_FLOOR)
            d = logp - logq
            p, q = logp.exp(), logq.exp()
            kl_pq[b], kl_qp[b] = (p * d).sum(-1), -(q * d).sum(-1)
        ctx.save_for_backward(logits, keep, lse_p, lse_q, kl_pq, kl_qp)
        return 0.5 * ((kl_pq + kl_qp) * keep).sum()

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:
        logits, keep, lse_p, lse_q, kl_pq, kl_qp = ctx.saved_tensors
        p_logits, q_logits = logits.chunk(2)
        w = 0.5 * g * keep.to(lse_p.dtype)[:, None]  # (N, 1)
        grad = torch.empty_like(logits)
        grad_p, grad_q = grad.chunk(2)
        for b in _blocks(p_logits):
            logp = (p_logits[b].to(lse_p.dtype) - lse_p[b, None]).clamp_(min=LOG_PROB_FLOOR)
            logq = (q_logits[b].to(lse_p.dtype) - lse_q[b, None]).clamp_(min=LOG_PROB_FLOOR)
            p, q, d = logp.exp(), logq.exp(), logp - logq
            # through log-softmax: d S / d z_p = (p (log p - log q - KL(p||q)) + p - q) / 2
            grad_p[b] = w[b] * (p * (d - kl_pq[b, None]) + p - q)
            grad_q[b] = w[b] * (q * (-d - kl_qp[b, None]) + q - p)
        return grad, None


def rdrop_kl(logits: Tensor, keep: Tensor) -> Tensor:
    """R-Drop's consistency term (Liang et al. 2021): half of KL(p||q) + KL(q||p) summed over
    the rows `keep`, p and q from the two halves of a batch that holds each example twice."""
    # logits: (2B, ..., V), keep: (B, ...) -> scalar
    return _RDropKL.apply(logits.reshape(-1, logits.size(-1)), keep.reshape(-1))
