"""Beam search's per-step work done in place and by blocks gives what the plain tensor
operations give, bit for bit: the step's best tokens (`aiayn.decode.vocab`) and the reorder of
the key/value cache into its spare buffers (`aiayn.decode.cache`)."""

import torch

from aiayn.decode import vocab
from aiayn.decode.cache import LayerCache
from aiayn.decode.search import n_best_search
from aiayn.decode.vocab import BestTokens
from tests.decode.conftest import SPECIAL


def plain_best(self, logits, each):
    """The search's step before blocks: log_softmax over the whole tensor, then topk."""
    logp = logits.float().log_softmax(-1)
    logp[:, self.banned] = float("-inf")
    return logp.topk(each, dim=1)


def plain_reorder(self, heads):
    """The reorder before spare buffers: the chosen beams' rows, copied anew."""
    index = heads[:: self.k.size(1)] // self.k.size(1)
    self.k, self.v = self.k[index], self.v[index]


def test_best_tokens_by_blocks_are_exactly_those_of_the_whole_tensor():
    torch.manual_seed(0)
    best = BestTokens(banned=[0, 1])
    for n in (2 * vocab.BLOCK_ROWS + 5, 3, vocab.BLOCK_ROWS):  # the block is kept between calls
        logits = torch.randn(n, 300) * 4
        got, want = best(logits, 10), plain_best(best, logits, 10)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert not torch.isin(got[1], torch.tensor([0, 1])).any()


def test_reordering_into_spare_buffers_keeps_exactly_the_chosen_rows():
    torch.manual_seed(0)
    layer, plain = LayerCache(), LayerCache()
    rows = 6
    # beams move, then sentences leave; past 16 positions the buffers grow
    for step, keep in enumerate([6] * 8 + [4] * 8 + [2] * 4):
        k, v = torch.randn(2, rows, 2, 1, 8).unbind(0)
        for cache in (layer, plain):
            cache.append(k, v)
        index = torch.randint(0, rows, (keep,))
        heads = (index[:, None] * 2 + torch.arange(2)).view(-1)
        layer.reorder(heads)
        plain_reorder(plain, heads)
        n = plain.length
        assert torch.equal(layer.k[:, :, :n], plain.k[:, :, :n]), step
        assert torch.equal(layer.v[:, :, :n], plain.v[:, :, :n]), step
        rows = keep


def test_beam_search_gives_exactly_the_plain_steps_tokens_and_scores(trained, sources, monkeypatch):
    monkeypatch.setattr(vocab, "BLOCK_ROWS", 7)  # blocks that split sentences' beams
    found = n_best_search(trained, sources, SPECIAL, beam=3, n_best=3)
    monkeypatch.setattr(BestTokens, "__call__", plain_best)
    monkeypatch.setattr(LayerCache, "reorder", plain_reorder)
    assert found == n_best_search(trained, sources, SPECIAL, beam=3, n_best=3)
