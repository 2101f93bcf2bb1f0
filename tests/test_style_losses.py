"""style_losses: every function against values computed by hand on tiny tensors (V=4 or 5, T=3)."""

import math

import pytest
import torch

from lavis_gated.tasks import losses as sl

IGNORE = sl.IGNORE


def _logits_from_probs(rows):
    """(B, T, V) logits whose softmax is exactly the given probabilities."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_style_target_mask_is_the_positions_whose_target_identifies_a_style():
    targets = torch.tensor([[IGNORE, 5, 2, 3], [1, 2, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE, IGNORE]])
    mask = sl.style_target_mask(targets, torch.tensor([3, 5]))
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [False, True, False, True],
        [False, False, False, False],
        [False, False, False, False],
    ]
    assert not sl.style_target_mask(targets, torch.tensor([], dtype=torch.long)).any()


def test_answer_token_counts_include_the_end_token():
    targets = torch.tensor([[IGNORE, 5, 2, 3], [1, 2, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE, IGNORE]])
    assert sl.answer_token_counts(targets).tolist() == [3, 2, 0]


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


def test_teacher_kl_is_kl_of_teacher_over_student_at_the_temperature():
    probe = torch.tensor([[0.7, 0.2, 0.1]]).log()
    image = torch.tensor([[2.0, 0.0, -1.0]])
    p_image = torch.softmax(image / 0.5, -1)
    p_probe = torch.softmax(probe / 0.5, -1)
    by_hand_image = (p_image * (p_image.log() - p_probe.log())).sum().item()
    by_hand_probe = (p_probe * (p_probe.log() - p_image.log())).sum().item()
    assert sl.teacher_kl(probe, image, 0.5, "image").item() == pytest.approx(by_hand_image, rel=1e-5)
    assert sl.teacher_kl(probe, image, 0.5, "probe").item() == pytest.approx(by_hand_probe, rel=1e-5)
    with pytest.raises(ValueError, match="style_kl_teacher"):
        sl.teacher_kl(probe, image, 0.5, "text")


@pytest.mark.parametrize(
    "teacher, detach, probe_grad, image_grad",
    [("image", True, True, False), ("probe", True, False, True), ("image", False, True, True)],
)
def test_teacher_kl_detach_leaves_the_teacher_without_gradient(teacher, detach, probe_grad, image_grad):
    probe = torch.tensor([[0.7, 0.2, 0.1]]).log().requires_grad_()
    image = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    sl.teacher_kl(probe, image, 1.0, teacher, detach).sum().backward()
    assert bool(probe.grad is not None and probe.grad.abs().sum() > 0) is probe_grad
    assert bool(image.grad is not None and image.grad.abs().sum() > 0) is image_grad


def test_naming_loss_is_the_labels_negative_log_probability_and_names_only_the_label():
    probe = torch.tensor([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]).log()
    labels = torch.tensor([0, 1, -1])
    loss = sl.naming_loss(probe, labels)
    assert loss.tolist() == pytest.approx([-math.log(0.6), -math.log(0.3), 0.0], rel=1e-6)
    # naming a wrong style is no better than naming none: the loss reads the label's probability only
    wrong = torch.tensor([[0.05, 0.9, 0.05]]).log()
    assert sl.naming_loss(wrong, torch.tensor([0])).item() == pytest.approx(-math.log(0.05), rel=1e-6)


def test_argmax_style_hits_counts_positions_with_style_argmax():
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


def test_style_log_distribution_divides_by_the_temperature():
    scores = torch.tensor([[2.0, 0.0, -2.0]])
    for temperature in (1.0, 2.0, 0.5):
        expected = [math.exp(v / temperature) for v in (2.0, 0.0, -2.0)]
        total = sum(expected)
        got = sl.style_log_distribution(scores, temperature).exp()[0].tolist()
        assert got == pytest.approx([e / total for e in expected], rel=1e-6)


def test_kl_divergence_matches_hand_computation_and_has_a_direction():
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert sl.kl_divergence(p.log(), q.log()).tolist() == pytest.approx([kl_pq, 0.0], abs=1e-12)
    assert sl.kl_divergence(q.log(), p.log()).tolist() == pytest.approx([kl_qp, 0.0], abs=1e-12)
    assert kl_pq == pytest.approx(0.5108256, rel=1e-6) and kl_qp == pytest.approx(0.3680642, rel=1e-6)


def test_kl_of_a_sure_text_side_is_bounded_by_the_image_heads_log_loss():
    """Finding 3: the old symmetric KL grew without bound as the text side grew sure, although both sides
    agreed on the style. KL(text || image) is at most -log p_image(the text's style) however sure the text."""
    image_logits = torch.tensor([[1.0, 0.0, 0.0]])  # soft, but right: p(0) = 0.576
    bound = -torch.log_softmax(image_logits, -1)[0, 0].item()
    values = []
    for sureness in (2.0, 10.0, 50.0, 200.0):
        text = sl.style_log_distribution(torch.tensor([[0.0, -sureness, -sureness]]), 1.0)
        values.append(sl.kl_divergence(text, sl.style_log_distribution(image_logits, 1.0)).item())
    assert all(v <= bound + 1e-6 for v in values)
    assert values[-1] == pytest.approx(bound, rel=1e-4)
    assert values == sorted(values)  # approaches the bound from below


def test_a_temperature_above_one_makes_the_kl_compare_the_lower_ranks():
    """At temperature 1 a sure text side makes the KL the image head's log-loss on the top style alone; at 2
    the order of the other styles counts: the image head that ranks them as the text does is closer."""
    text = torch.tensor([[0.0, -4.0, -8.0]])
    same_order, other_order = torch.tensor([[2.0, 0.0, -2.0]]), torch.tensor([[2.0, -2.0, 0.0]])

    def kl(image, temperature):
        return sl.kl_divergence(
            sl.style_log_distribution(text, temperature), sl.style_log_distribution(image, temperature)
        ).item()

    assert kl(same_order, 2.0) < kl(other_order, 2.0)
    gap = lambda t: kl(other_order, t) - kl(same_order, t)  # noqa: E731
    assert gap(2.0) > 2 * gap(1.0)  # 0.101 against 0.035


def test_style_cross_entropy_is_zero_for_unlabelled_rows():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, -5.0]], requires_grad=True)
    ids = torch.tensor([1, 0, -1])
    loss = sl.style_cross_entropy(logits, ids)
    # softmax of row 0/1 = (1/4, 3/4)
    assert loss.tolist() == pytest.approx([math.log(4 / 3), math.log(4), 0.0], rel=1e-6)
    loss.sum().backward()
    assert logits.grad[2].tolist() == [0.0, 0.0]
