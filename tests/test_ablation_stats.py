"""ablation_stats: the t-interval, bootstrap and McNemar test against values computed by hand."""

import math

import pytest

from lavis_gated.ablation import stats as stats


def test_t_quantiles_match_the_printed_table():
    # t_{0.975, df} from any statistics table
    for df, expected in ((1, 12.706), (2, 4.303), (4, 2.776), (30, 2.042)):
        assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_interval_of_three_seeds():
    summary = stats.t_interval([1.0, 2.0, 3.0])
    # mean 2, sample std 1, half width t_{0.975,2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    assert summary["n"] == 3 and summary["mean"] == 2.0 and summary["std"] == pytest.approx(1.0)
    assert summary["ci_low"] == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert summary["ci_high"] == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_t_interval_degenerate_cases():
    assert stats.t_interval([0.5, 0.5]) == {"n": 2, "mean": 0.5, "std": 0.0, "ci_low": 0.5, "ci_high": 0.5}
    assert stats.t_interval([0.25]) == {"n": 1, "mean": 0.25, "std": None, "ci_low": None, "ci_high": None}
    with pytest.raises(ValueError):
        stats.t_interval([])


def test_summary_over_seeds_counts_the_seeds_that_report_a_metric():
    summary = stats.summarise_over_seeds([{"em": 0.2, "bleu4": 0.1}, {"em": 0.4}, {"em": 0.6}])
    assert list(summary) == ["em", "bleu4"]
    assert summary["em"]["n"] == 3 and summary["em"]["mean"] == pytest.approx(0.4)
    assert summary["em"]["std"] == pytest.approx(0.2)
    assert summary["bleu4"]["n"] == 1 and summary["bleu4"]["ci_low"] is None


@pytest.mark.parametrize(
    "b, c, p",
    [
        (1, 9, 0.021484375),  # 2 * (C(10,0) + C(10,1)) / 2^10 = 2 * 11 / 1024
        (9, 1, 0.021484375),  # two-sided: symmetric
        (0, 3, 0.25),  # 2 * 1/8
        (0, 0, 1.0),  # no discordant pair
        (5, 5, 1.0),  # 2 * 638/1024 > 1, capped
        (0, 20, 2 / 2**20),
    ],
)
def test_exact_mcnemar(b, c, p):
    assert stats.mcnemar_exact(b, c) == p


def test_bootstrap_of_equal_differences_has_zero_width():
    assert stats.bootstrap_mean_interval([[0.5], [0.5, 0.5], [0.5]], resamples=500) == (0.5, 0.5)


def test_bootstrap_of_two_opposite_questions_spans_both():
    # each resample's mean is -1, 0 or 1 with probabilities 1/4, 1/2, 1/4:
    # the 2.5 % and 97.5 % quantiles are -1 and 1
    assert stats.bootstrap_mean_interval([[1], [-1]], resamples=2000, seed=3) == (-1.0, 1.0)


def test_bootstrap_is_reproducible_and_seeded():
    groups = [[1, 0], [0, 0], [-1, 1], [1, 1], [0, -1], [1, 0], [0, 0], [0, 1], [1, 1, 1], [0], [-1]]
    first = stats.bootstrap_mean_interval(groups, resamples=2000, seed=7)
    assert stats.bootstrap_mean_interval(groups, resamples=2000, seed=7) == first
    assert stats.bootstrap_mean_interval(groups, resamples=2000, seed=8) != first
    pooled = sum(map(sum, groups)) / sum(map(len, groups))
    assert first[0] < pooled < first[1]


def test_bootstrap_result_does_not_depend_on_its_memory_chunks(monkeypatch):
    groups = [[i % 3 - 1, i % 2] for i in range(50)]
    whole = stats.bootstrap_mean_interval(groups, resamples=300, seed=1)
    monkeypatch.setattr(stats, "_RESAMPLE_CHUNK_CELLS", 50 * 7)  # 7 resamples per draw, the last one short
    assert stats.bootstrap_mean_interval(groups, resamples=300, seed=1) == whole


def test_paired_comparison_by_hand():
    variant = [{"q1": 1, "q2": 1, "q3": 0}, {"q1": 1, "q2": 0, "q3": 1}]
    reference = [{"q1": 0, "q2": 1, "q3": 0}, {"q1": 0, "q2": 1, "q3": 1, "q4": 1}]
    result = stats.paired_comparison(variant, reference, resamples=2000, seed=0)
    # seed 0: q1 variant only, q2 both, q3 neither; seed 1: q1 variant only, q2 reference only, q3 both
    assert {
        k: result[k]
        for k in (
            "seeds",
            "questions",
            "pairs",
            "unpaired",
            "both",
            "variant_only",
            "reference_only",
            "neither",
        )
    } == {
        "seeds": 2,
        "questions": 3,
        "pairs": 6,
        "unpaired": 1,
        "both": 2,
        "variant_only": 2,
        "reference_only": 1,
        "neither": 1,
    }
    assert result["variant_acc"] == pytest.approx(4 / 6) and result["reference_acc"] == pytest.approx(3 / 6)
    assert result["mean_difference"] == pytest.approx(1 / 6)
    assert result["mcnemar_p"] == 1.0  # b=2, c=1: 2 * (1 + 3) / 8 > 1
    assert result["ci_low"] <= 1 / 6 <= result["ci_high"]
    # per question differences [1, 1], [0, -1], [0, 0]: no resample can exceed 2/2 or fall below -1/2
    assert -0.5 <= result["ci_low"] and result["ci_high"] <= 1.0


def test_paired_comparison_refuses_what_cannot_be_paired():
    with pytest.raises(ValueError, match="same number of seeds"):
        stats.paired_comparison([{"q": 1}], [{"q": 1}, {"q": 0}])
    with pytest.raises(ValueError, match="share no question_id"):
        stats.paired_comparison([{"a": 1}], [{"b": 1}])


def test_identical_answers_give_no_difference():
    same = [{f"q{i}": i % 2 for i in range(40)}] * 3
    result = stats.paired_comparison(same, same, resamples=2000)
    assert result["mean_difference"] == 0 and (result["ci_low"], result["ci_high"]) == (0.0, 0.0)
    assert result["mcnemar_p"] == 1.0 and math.isclose(result["variant_acc"], 0.5)
