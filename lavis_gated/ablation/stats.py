"""The statistics of an ablation (pure; docs/ablation.md states each one and which question it answers): a
t-interval of a metric over seeds, and the paired comparison of two variants: per seed, the difference in
exact-match accuracy on the same questions, with a t-interval over seeds (the headline), and per seed an
exact McNemar test (secondary: it compares two trained models, not two variants).

A variant's result varies from seed to seed as much as from question to question (about 0.06 in accuracy on
the demo), so the seeds are the replicates: an interval that resamples questions only, pooling the seeds,
excluded 0 in about a third of simulated ablations with no real difference. tests/test_ablation_stats.py
checks the headline interval's calibration on such simulations.
"""

import math
from fractions import Fraction

CONFIDENCE = 0.95
RECOMMENDED_SEEDS = 5  # t_{0.975,4} / sqrt(5) = 1.24 against t_{0.975,2} / sqrt(3) = 2.48: half the interval


def t_quantile(p, df):
    """The p-quantile of Student's t distribution with `df` degrees of freedom."""
    from scipy.special import stdtrit  # a fifth of scipy.stats's import time

    return float(stdtrit(df, p))


def t_interval(values, confidence=CONFIDENCE):
    """values: a metric over seeds -> {n, mean, std, ci_low, ci_high}.

    std is the sample standard deviation (n - 1); the interval is mean -+ t_{(1+confidence)/2, n-1} * std /
    sqrt(n). With one value std and the interval are None: one seed says nothing about the spread.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def summarise_over_seeds(per_seed_metrics, confidence=CONFIDENCE):
    """[{metric: number} per seed] -> {metric: t_interval(...)}, each over the seeds reporting the metric."""
    flat = list(per_seed_metrics)
    names = list(dict.fromkeys(name for f in flat for name in f))
    return {name: t_interval([f[name] for f in flat if name in f], confidence) for name in names}


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value: a binomial test of b successes in b + c discordant pairs at 1/2.

    b: pairs only the variant got right; c: pairs only the reference got right.
    p = min(1, 2 * sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c)); 1 when there is no discordant pair.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def seed_difference_interval(differences, confidence=CONFIDENCE):
    """The headline comparison of two variants: differences (..., n) of per-seed accuracies (variant -
    reference, seed k with seed k) -> (mean, low, high, p), each (...), float64; the t-interval over seeds
    and the two-sided p of the paired t-test. NaN interval and p for one seed; a zero spread gives the mean
    as both ends and p 1 (mean 0) or 0.

    Vectorised over leading axes, so the calibration test can run thousands of simulated ablations at once.
    The seeds are the independent units: a seed's training draws (initialisation, data order, dropout) move
    every question of that seed together, so questions within a seed are not independent replicates of the
    variant (pooling them, as a bootstrap over questions does, ignores that variance).
    """
    import numpy as np  # here, not at the top: the harness's --help imports this module for its default

    d = np.asarray(differences, dtype=np.float64)
    n = d.shape[-1]
    mean = d.mean(-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy(), nan.copy()
    from scipy.special import stdtr

    se = d.std(-1, ddof=1) / math.sqrt(n)
    half = t_quantile((1 + confidence) / 2, n - 1) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1), np.where(mean == 0, 0.0, np.inf))
    p = 2 * stdtr(n - 1, -np.abs(t))
    return mean, mean - half, mean + half, p


def _number_or_none(x):
    x = float(x)
    return None if math.isnan(x) else x


def paired_comparison(variant_seeds, reference_seeds, confidence=CONFIDENCE):
    """Paired correctness of a variant against the reference, seed by seed.

    variant_seeds, reference_seeds: per seed, {question_id: 1 if correct else 0}; seed k of the variant is
    paired with seed k of the reference, and within a pair each question with itself.

    Headline (mean_difference, ci_low, ci_high, t_p): per seed, the difference in accuracy on the shared
    questions; their mean, t-interval over seeds and paired t-test p (seed_difference_interval; interval
    and p None with one seed). Secondary, per seed (`per_seed`): the counts and the exact McNemar p of that
    seed alone, which tests whether the two trained models (that seed's) answer differently, not whether
    the variants differ. Also the counts and accuracies pooled over seeds.
    """
    if len(variant_seeds) != len(reference_seeds) or not variant_seeds:
        raise ValueError(
            f"paired_comparison needs the same number of seeds on both sides, got "
            f"{len(variant_seeds)} and {len(reference_seeds)}"
        )
    kinds = ("neither", "reference_only", "variant_only", "both")
    per_seed, questions, unpaired = [], set(), 0
    for variant, reference in zip(variant_seeds, reference_seeds):
        shared = variant.keys() & reference.keys()
        unpaired += len(variant.keys() ^ reference.keys())
        if not shared:
            raise ValueError("paired_comparison: the variant and the reference share no question_id")
        questions |= shared
        counts = dict.fromkeys(kinds, 0)
        for qid in shared:
            counts[kinds[2 * int(variant[qid]) + int(reference[qid])]] += 1
        per_seed.append(
            {
                "pairs": len(shared),
                **counts,
                "difference": (counts["variant_only"] - counts["reference_only"]) / len(shared),
                "mcnemar_p": mcnemar_exact(counts["variant_only"], counts["reference_only"]),
            }
        )
    pooled = {k: sum(seed[k] for seed in per_seed) for k in ("pairs", *kinds)}
    mean, low, high, p = seed_difference_interval([seed["difference"] for seed in per_seed], confidence)
    return {
        "seeds": len(per_seed),
        "questions": len(questions),
        "unpaired": unpaired,
        **pooled,
        "variant_acc": (pooled["both"] + pooled["variant_only"]) / pooled["pairs"],
        "reference_acc": (pooled["both"] + pooled["reference_only"]) / pooled["pairs"],
        "mean_difference": float(mean),
        "ci_low": _number_or_none(low),
        "ci_high": _number_or_none(high),
        "t_p": _number_or_none(p),
        "per_seed": per_seed,
    }
