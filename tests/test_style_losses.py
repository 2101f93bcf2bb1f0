"""style_losses: every function against values computed by hand on tiny tensors (V=4 or 5, T=3)."""

import math

import pytest
import torch

from lavis_gated.tasks import style_losses as sl

IGNORE = sl.IGNORE


def _logits_from_probs(rows):
    """(B, T, V) logits whose softmax is exactly the given probabilities."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_answer_word_mask_excludes_ignore_and_eos():
    eos = 2
    targets = torch.tensor([[IGNORE, 5, 2, 3], [1, 2, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE, IGNORE]])
    mask = sl.answer_word_mask(targets, eos)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [False, True, False, True],
        [True, False, False, False],
        [False, False, False, False],
    ]


def test_masked_mean_over_mask():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0])
    mask = torch.tensor([True, False, True, False])
    assert sl.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert sl.masked_mean(values, torch.ones(4, dtype=torch.bool)).item() == pytest.approx(4.0)


def test_masked_mean_of_empty_mask_is_zero_and_stays_in_graph():
    values = torch.tensor([1.5, -2.0, 7.0], requires_grad=True)
    out = sl.masked_mean(values, torch.zeros(3, dtype=torch.bool))
    assert out.item() == 0.0
    assert out.requires_grad
    out.backward()
    assert values.grad is not None
    assert values.grad.tolist() == [0.0, 0.0, 0.0]


def test_masked_mean_gradient_is_uniform_over_the_mask():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    sl.masked_mean(values, torch.tensor([True, True, False, True])).backward()
    assert values.grad.tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3])


def test_lm_loss_per_sample_is_mean_negative_log_softmax_over_answer_tokens():
    logits = torch.tensor(
        [
            [[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0], [5.0, -1.0, 0.5, 2.0]],
            [[2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 3.0, -3.0], [1.0, 1.0, 1.0, 4.0]],
            [[9.0, 0.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0]],
        ]
    )
    targets = torch.tensor([[IGNORE, 3, 0], [2, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE]])

    def nll(row, target):
        return math.log(sum(math.exp(v) for v in row)) - row[target]

    rows = logits.tolist()
    expected = [
        (nll(rows[0][1], 3) + nll(rows[0][2], 0)) / 2,
        nll(rows[1][0], 2),  # uniform logits: log 4
        0.0,  # no answer tokens: 0, not NaN
    ]
    assert expected[1] == pytest.approx(math.log(4))
    loss = sl.lm_loss_per_sample(logits, targets)
    assert loss.shape == (3,)
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


def test_soft_style_hit_rate_is_style_mass_averaged_over_word_positions():
    logits = _logits_from_probs(
        [
            [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]],
            [[0.1, 0.6, 0.1, 0.2], [0.4, 0.3, 0.2, 0.1], [0.05, 0.05, 0.05, 0.85]],
            [[0.1, 0.8, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05]],
        ]
    )
    word_mask = torch.tensor([[True, True, False], [False, True, True], [False, False, False]])
    style_ids = torch.tensor([1, 3])
    rate = sl.soft_style_hit_rate(logits, word_mask, style_ids)
    # row 0: (0.6 + 0.5) / 2; row 1: (0.4 + 0.9) / 2; row 2: no word positions -> 0
    assert rate.tolist() == pytest.approx([0.55, 0.65, 0.0], rel=1e-9)
    assert not torch.isnan(rate).any()


def test_soft_style_hit_rate_increases_after_a_gradient_ascent_step():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    word_mask = torch.tensor([[True, True, False], [True, False, True]])
    style_ids = torch.tensor([0, 4])
    before = sl.soft_style_hit_rate(logits, word_mask, style_ids)
    before.sum().backward()
    # masked positions get no gradient
    assert logits.grad[0, 2].abs().sum().item() == 0.0
    assert logits.grad[1, 1].abs().sum().item() == 0.0
    # the gradient pushes the style logits up and the others down
    assert (logits.grad[0, 0, [0, 4]] > 0).all() and (logits.grad[0, 0, [1, 2, 3]] < 0).all()
    with torch.no_grad():
        after = sl.soft_style_hit_rate(logits + 0.5 * logits.grad, word_mask, style_ids)
    assert (after > before.detach()).all()


def test_argmax_style_hits_counts_word_positions_with_style_argmax():
    logits = torch.tensor(
        [
            [[0.0, 5.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]],  # argmax 1, 0, 3
            [[0.0, 0.0, 0.0, 5.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]],  # argmax 3, 1, 2
        ]
    )
    word_mask = torch.tensor([[True, True, False], [True, True, True]])
    hits, positions = sl.argmax_style_hits(logits, word_mask, torch.tensor([1, 3]))
    assert hits.tolist() == [1, 2]
    assert positions.tolist() == [2, 3]


def test_text_style_log_probs_with_padded_style_table():
    # V=5; style 0 = tokens (1, 2); style 1 = token 3 plus a padding slot pointing at token 0.
    style_tokens = torch.tensor([[1, 2], [3, 0]])
    style_token_mask = torch.tensor([[True, True], [True, False]])
    logits = torch.tensor(
        [
            [
                [10.0, 0.0, 2.0, 3.0, 0.0],
                [10.0, 2.0, 4.0, 5.0, 0.0],
                [-50.0, 90.0, 90.0, -90.0, 0.0],  # not a word position: must not count
            ]
        ]
    )
    word_mask = torch.tensor([[True, True, False]])
    # mean logits over word positions: [10, 1, 3, 4, 0]; style 0: (1 + 3) / 2 = 2; style 1: 4 (padding
    # ignored)
    log_probs = sl.text_style_log_probs(logits, word_mask, style_tokens, style_token_mask)
    norm = math.log(math.exp(2.0) + math.exp(4.0))
    assert log_probs.shape == (1, 2)
    assert log_probs[0].tolist() == pytest.approx([2.0 - norm, 4.0 - norm], rel=1e-6)
    assert log_probs.exp().sum().item() == pytest.approx(1.0)


def test_symmetric_kl_matches_hand_computation_and_is_symmetric():
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    expected = 0.5 * (kl_pq + kl_qp)
    forward = sl.symmetric_kl(p.log(), q.log())
    backward = sl.symmetric_kl(q.log(), p.log())
    assert forward.tolist() == pytest.approx([expected, 0.0], abs=1e-12)
    assert backward.tolist() == pytest.approx(forward.tolist(), abs=1e-12)
    assert expected == pytest.approx(0.5 * (0.5108256 + 0.3680642), rel=1e-6)


def test_symmetric_kl_is_zero_for_equal_distributions():
    log_p = torch.log_softmax(torch.tensor([[0.3, -1.2, 2.0, 0.0, 0.7]]), -1)
    assert sl.symmetric_kl(log_p, log_p.clone()).tolist() == [0.0]


def test_style_cross_entropy_is_zero_for_unlabelled_rows():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, -5.0]], requires_grad=True)
    ids = torch.tensor([1, 0, -1])
    loss = sl.style_cross_entropy(logits, ids)
    # softmax of row 0/1 = (1/4, 3/4)
    assert loss.tolist() == pytest.approx([math.log(4 / 3), math.log(4), 0.0], rel=1e-6)
    loss.sum().backward()
    assert logits.grad[2].tolist() == [0.0, 0.0]
