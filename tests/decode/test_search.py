import pytest
import torch

from aiayn.decode import search
from aiayn.decode.search import Special, beam_search, greedy, n_best_search, sequence_score
from tests.decode.conftest import SPECIAL, VOCAB, tiny_model


def test_the_trained_fixture_really_reverses(trained, sources):
    hyps = greedy(trained, sources, SPECIAL)
    expected = [[t for t in row if t > 2][::-1] for row in sources.tolist()]
    assert sum(h == e for h, e in zip(hyps, expected, strict=True)) >= 45


def test_cached_decoding_gives_exactly_the_tokens_of_full_recomputation(model, sources):
    assert greedy(model, sources, SPECIAL) == greedy(model, sources, SPECIAL, use_cache=False)


def test_beam_size_one_is_exactly_greedy(model, sources):
    hyps = [tokens for tokens, _ in beam_search(model, sources, SPECIAL, beam=1)]
    assert hyps == greedy(model, sources, SPECIAL)


def test_beam_score_is_never_below_greedys(model, sources):
    alpha = 0.6
    greedy_hyps = greedy(model, sources, SPECIAL)
    limits = ((sources != SPECIAL.pad).sum(1) + 50).tolist()
    for row, (hyp, score), g, limit in zip(
        sources,
        beam_search(model, sources, SPECIAL, beam=4, alpha=alpha),
        greedy_hyps,
        limits,
        strict=True,
    ):
        src = row[row != SPECIAL.pad][None]
        assert score == pytest.approx(
            sequence_score(model, src, hyp, SPECIAL, alpha, ends=len(hyp) < limit), abs=1e-4
        )
        g_score = sequence_score(model, src, g, SPECIAL, alpha, ends=len(g) < limit)
        assert score >= g_score - 1e-5


@pytest.mark.parametrize("norm", ["gnmt", "length"])
def test_beam_scores_are_log_probabilities_over_the_length_penalty(model, sources, norm):
    alpha = 0.6
    limits = ((sources != SPECIAL.pad).sum(1) + 50).tolist()
    found = beam_search(model, sources, SPECIAL, beam=4, alpha=alpha, norm=norm)
    for row, (hyp, score), limit in zip(sources, found, limits, strict=True):
        src = row[row != SPECIAL.pad][None]
        ends = len(hyp) < limit
        total = sequence_score(model, src, hyp, SPECIAL, 0.0, ends=ends)
        length = len(hyp) + ends  # </s> counted, as transformers and CTranslate2 count it
        penalty = length if norm == "length" else (5 + length) / 6
        assert score == pytest.approx(total / penalty**alpha, abs=1e-4)
        rescored = sequence_score(model, src, hyp, SPECIAL, alpha, ends=ends, norm=norm)
        assert score == pytest.approx(rescored, abs=1e-4)


def test_outputs_stop_at_source_length_plus_max_extra(sources):
    torch.manual_seed(5)
    model = tiny_model().eval()
    model.generator = torch.nn.Linear(32, 16)  # untied, so that </s> alone can be ruled out
    with torch.no_grad():  # </s> is never chosen, so only the length limit stops decoding
        model.generator.bias[SPECIAL.eos] = -1e9
    src_len = (sources != SPECIAL.pad).sum(1).tolist()
    beam = [tokens for tokens, _ in beam_search(model, sources, SPECIAL, beam=3, max_extra=3)]
    for hyps in (greedy(model, sources, SPECIAL, max_extra=3), beam):
        assert [len(h) for h in hyps] == [n + 3 for n in src_len]
    assert all(len(h) == 4 for h in greedy(model, sources, SPECIAL, max_extra=3, cap=4))


@pytest.mark.parametrize("special", [SPECIAL, Special(bos=0, eos=2, pad=0)], ids=["own", "marian"])
def test_searches_never_emit_bos_or_pad_and_return_what_they_scored(sources, special):
    torch.manual_seed(4)
    model = tiny_model().eval()
    bias = torch.zeros(VOCAB)
    bias[[special.bos, special.pad]] = 5.0
    model.generator.register_forward_hook(lambda _m, _i, out: out + bias)  # <s>, <pad> likeliest
    rows = sources[:8].clone()
    for hyp in greedy(model, rows, special, max_extra=6):
        assert special.bos not in hyp and special.pad not in hyp and len(hyp) > 0
    for (hyp, score), src in zip(beam_search(model, rows, special, 3, 0.6, 6), rows, strict=True):
        assert special.bos not in hyp and special.pad not in hyp
        ends = len(hyp) < (src != special.pad).sum() + 6
        rescored = sequence_score(model, src[None], hyp, special, 0.6, ends=ends)
        assert rescored == pytest.approx(score, abs=1e-4)


def test_n_best_lists_start_with_beam_searchs_choice_and_are_ranked(model, sources):
    best = beam_search(model, sources, SPECIAL, beam=4, alpha=0.6)
    lists = n_best_search(model, sources, SPECIAL, beam=4, alpha=0.6, n_best=3)
    assert [hyps[0] for hyps in lists] == best
    for row, hyps in zip(sources, lists, strict=True):
        assert 1 <= len(hyps) <= 3
        scores = [score for _, score in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(tokens) for tokens, _ in hyps}) == len(hyps)  # distinct outputs
        for tokens, score in hyps:  # each score is its hypothesis' own, rescored alone
            src = row[row != SPECIAL.pad][None]
            ends = len(tokens) < int(src.size(1)) + 50
            assert score == pytest.approx(
                sequence_score(model, src, tokens, SPECIAL, 0.6, ends), abs=1e-4
            )


def test_n_best_beyond_the_beam_is_refused(trained, sources):
    with pytest.raises(ValueError, match=r"n_best 3 must be in \[1, beam = 2\]"):
        n_best_search(trained, sources, SPECIAL, beam=2, n_best=3)


def test_a_batch_gives_each_sentence_what_it_gets_alone_as_finished_ones_leave_it(
    model, sources, monkeypatch
):
    rows_seen = []
    decode = model.decode

    def counting(tgt, *args, **kw):
        rows_seen.append(tgt.size(0))
        return decode(tgt, *args, **kw)

    monkeypatch.setattr(model, "decode", counting)
    batch = n_best_search(model, sources, SPECIAL, beam=3, n_best=3)
    # the first step feeds one row a sentence (its beams' prefixes are all <s>), then K
    assert rows_seen[:2] == [len(sources), 3 * len(sources)] and rows_seen[-1] < rows_seen[1]
    assert rows_seen[1:] == sorted(rows_seen[1:], reverse=True)  # sentences that are done leave
    for row, hyps in zip(sources, batch, strict=True):
        alone = n_best_search(model, row[row != SPECIAL.pad][None], SPECIAL, beam=3, n_best=3)[0]
        assert [tokens for tokens, _ in hyps] == [tokens for tokens, _ in alone]
        for (_, score), (_, single) in zip(hyps, alone, strict=True):
            assert score == pytest.approx(single, abs=1e-5)


def test_an_output_ends_at_any_end_id_as_at_eos(trained, sources):
    """A checkpoint's second end id (Llama 3's <|eot_id|>) ends an output where it is chosen,
    in greedy and beam search alike, and is not part of it."""
    plain = greedy(trained, sources, SPECIAL)
    token = plain[0][1]  # a token the model chooses
    special = Special(SPECIAL.bos, SPECIAL.eos, SPECIAL.pad, more_ends=(token,))
    cut = [h[: h.index(token)] if token in h else h for h in plain]
    assert greedy(trained, sources, special) == cut and cut != plain
    for hyp, _ in beam_search(trained, sources, special, beam=3):
        assert token not in hyp


def searched(model, sources, monkeypatch, n_best, norm, until_k=False):
    """n_best_search's output, and the rows each decoder step fed; `until_k`: by the rule
    before early stopping, each sentence searched until K of its hypotheses have finished."""
    seen, decode = [], model.decode

    def counting(tgt, *args, **kw):
        seen.append(tgt.size(0))
        return decode(tgt, *args, **kw)

    monkeypatch.setattr(model, "decode", counting)
    if until_k:
        rule = lambda finished, *_: [i for i, f in enumerate(finished) if len(f) < 4]  # noqa: E731
        monkeypatch.setattr(search, "_undecided", rule)
    found = n_best_search(model, sources, SPECIAL, beam=4, n_best=n_best, norm=norm)
    monkeypatch.undo()
    return found, sum(seen)


@pytest.mark.parametrize("n_best", [1, 3])
@pytest.mark.parametrize("norm", ["gnmt", "length"])
def test_stopping_once_no_live_hypothesis_can_rank_gives_what_k_finished_give(
    model, sources, monkeypatch, n_best, norm
):
    early, early_rows = searched(model, sources, monkeypatch, n_best, norm)
    full, full_rows = searched(model, sources, monkeypatch, n_best, norm, until_k=True)
    assert early == full  # the same tokens and the very same scores
    assert early_rows <= full_rows


def test_sentences_do_stop_before_k_hypotheses_finish(trained, sources, monkeypatch):
    _, early_rows = searched(trained, sources, monkeypatch, 1, "gnmt")
    _, full_rows = searched(trained, sources, monkeypatch, 1, "gnmt", until_k=True)
    assert early_rows < full_rows
