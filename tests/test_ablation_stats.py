"""ablation/stats.py: the t-intervals and McNemar test against values computed by hand, and the headline
comparison's calibration on simulated ablations with no real difference."""

import math

import numpy as np
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


def test_seed_difference_interval_by_hand():
    mean, low, high, p = stats.seed_difference_interval([0.1, 0.0, 0.2])
    # mean 0.1, sample std 0.1, half width 4.302653 * 0.1 / sqrt(3) = 0.248414; t = 0.1 / 0.057735 = 1.732
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1 - 0.248414, abs=1e-6)
    assert high == pytest.approx(0.1 + 0.248414, abs=1e-6)
    assert p == pytest.approx(0.2254, abs=1e-4)  # two-sided t-test p for t = sqrt(3), df 2
    assert [float(x) for x in stats.seed_difference_interval([0.0, 0.0])] == [0.0, 0.0, 0.0, 1.0]
    assert all(math.isnan(x) for x in stats.seed_difference_interval([0.3])[1:])


def simulated_null_differences(simulations, seeds, questions, seed_spread, rng):
    """Per-seed accuracy differences of two variants with the SAME accuracy distribution: (simulations,
    seeds). Each question has its own difficulty, shared by both variants and every seed (on the logit
    scale, as real questions are easy or hard for every model); each trained model (variant x seed) shifts
    every question's logit by one draw, the seed-to-seed variance; answers are Bernoulli draws from that."""
    difficulty = rng.normal(1.2, 1.0, size=(simulations, 1, 1, questions))
    # a logit shift of sd 0.06 / p(1 - p) moves the accuracy (about 0.73 here) by about seed_spread
    shift = rng.normal(0.0, seed_spread / 0.2, size=(simulations, 2, seeds, 1))
    correct = rng.random((simulations, 2, seeds, questions)) < 1 / (1 + np.exp(-(difficulty + shift)))
    accuracy = correct.mean(-1)
    return accuracy[:, 0] - accuracy[:, 1], accuracy


@pytest.mark.parametrize("seeds", [3, 5])
def test_headline_interval_is_calibrated_on_nulls_with_seed_variance(seeds):
    """No real difference, 180 questions, a per-seed accuracy spread of 0.06: the 95 % interval must exclude
    0 in at most 7 % of simulated ablations (the question bootstrap that pooled the seeds: about a third)."""
    rng = np.random.default_rng(seeds)
    differences, accuracy = simulated_null_differences(4000, seeds, 180, 0.06, rng)
    spread = accuracy.std(axis=2, ddof=1).mean()
    assert 0.045 < spread < 0.075, f"the simulation's seed spread is {spread:.3f}, not about 0.06"
    _, low, high, p = stats.seed_difference_interval(differences)
    excluded = ((low > 0) | (high < 0)).mean()
    assert excluded <= 0.07, f"{seeds} seeds: the interval excluded 0 in {excluded:.1%} of nulls"
    assert excluded == pytest.approx((p < 0.05).mean())  # the interval and the t-test agree
    # and it is not calibrated by being useless: a real difference of 0.15 is found most of the time with
    # 5 seeds (why 5 are recommended; with 3, t_{0.975,2} = 4.30 leaves it found about 4 times in 10)
    _, low, _, _ = stats.seed_difference_interval(differences + 0.15)
    assert (low > 0).mean() > (0.8 if seeds == 5 else 0.3)


def test_paired_comparison_by_hand():
    variant = [{"q1": 1, "q2": 1, "q3": 0}, {"q1": 1, "q2": 0, "q3": 1}]
    reference = [{"q1": 0, "q2": 1, "q3": 0}, {"q1": 0, "q2": 1, "q3": 1, "q4": 1}]
    result = stats.paired_comparison(variant, reference)
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
    # per seed: +1/3 (b 1, c 0) and 0 (b 1, c 1); mean 1/6, std sqrt(1/18), t_{0.975,1} = 12.706
    assert [s["difference"] for s in result["per_seed"]] == pytest.approx([1 / 3, 0.0])
    assert [s["mcnemar_p"] for s in result["per_seed"]] == [1.0, 1.0]
    assert result["mean_difference"] == pytest.approx(1 / 6)
    half = 12.7062 * math.sqrt(1 / 18) / math.sqrt(2)
    assert result["ci_low"] == pytest.approx(1 / 6 - half, abs=1e-4)
    assert result["ci_high"] == pytest.approx(1 / 6 + half, abs=1e-4)
    assert "mcnemar_p" not in result  # McNemar is per seed only: pooling seeds treats them as independent


def test_paired_comparison_refuses_what_cannot_be_paired():
    with pytest.raises(ValueError, match="same number of seeds"):
        stats.paired_comparison([{"q": 1}], [{"q": 1}, {"q": 0}])
    with pytest.raises(ValueError, match="share no question_id"):
        stats.paired_comparison([{"a": 1}], [{"b": 1}])


def test_identical_answers_give_no_difference():
    same = [{f"q{i}": i % 2 for i in range(40)}] * 3
    result = stats.paired_comparison(same, same)
    assert result["mean_difference"] == 0 and (result["ci_low"], result["ci_high"]) == (0.0, 0.0)
    assert result["t_p"] == 1.0 and math.isclose(result["variant_acc"], 0.5)
    assert all(s["mcnemar_p"] == 1.0 for s in result["per_seed"])


def test_one_seed_gives_a_difference_but_no_interval():
    result = stats.paired_comparison([{"q1": 1, "q2": 1}], [{"q1": 0, "q2": 1}])
    assert result["mean_difference"] == 0.5 and result["ci_low"] is None and result["t_p"] is None
