"""The statistics of an ablation (pure; docs/ablation.md states each one): a t-interval of a metric over
seeds, and the paired comparison of two variants' answers question by question (mean difference in
correctness with a bootstrap interval over questions, and an exact McNemar test).

Seeds are few (3 or so), so a metric's spread over seeds is the honest error bar of a variant; the paired
test uses every question of every seed, so it sees differences the seed means are too coarse for.
"""

import math
from fractions import Fraction

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
_RESAMPLE_CHUNK_CELLS = 4_000_000  # resamples x questions drawn at once: bounds the memory of the bootstrap


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


def bootstrap_mean_interval(groups, resamples=BOOTSTRAP_RESAMPLES, seed=0, confidence=CONFIDENCE):
    """Percentile bootstrap interval of the pooled mean of `groups` (lists of numbers), resampling groups.

    A group is one question's differences over the seeds: the seeds of a question are not independent of
    each other, so questions, not (question, seed) pairs, are drawn with replacement. Seeded: the same
    inputs give the same interval. Returns (low, high).
    """
    sums = np.array([math.fsum(g) for g in groups], dtype=np.float64)
    counts = np.array([len(g) for g in groups], dtype=np.float64)
    if len(groups) == 0 or counts.min() == 0:
        raise ValueError("bootstrap_mean_interval needs non-empty groups")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, _RESAMPLE_CHUNK_CELLS // len(groups))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        picks = rng.integers(0, len(groups), size=(stop - start, len(groups)))
        means[start:stop] = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def paired_comparison(
    variant_seeds, reference_seeds, resamples=BOOTSTRAP_RESAMPLES, seed=0, confidence=CONFIDENCE
):
    """Paired correctness of a variant against the reference, pooled over seeds.

    variant_seeds, reference_seeds: per seed, {question_id: 1 if correct else 0}; seed k of the variant is
    paired with seed k of the reference, and within a pair each question with itself. Returns the counts
    (both right, only the variant, only the reference, both wrong), both accuracies, the mean difference
    (variant - reference) with its bootstrap interval, and the exact McNemar p-value.
    """
    if len(variant_seeds) != len(reference_seeds) or not variant_seeds:
        raise ValueError(
            f"paired_comparison needs the same number of seeds on both sides, got "
            f"{len(variant_seeds)} and {len(reference_seeds)}"
        )
    groups, counts, unpaired = {}, {"both": 0, "variant_only": 0, "reference_only": 0, "neither": 0}, 0
    for variant, reference in zip(variant_seeds, reference_seeds):
        shared = variant.keys() & reference.keys()
        unpaired += len(variant.keys() ^ reference.keys())
        for qid in sorted(shared):
            v, r = int(variant[qid]), int(reference[qid])
            groups.setdefault(qid, []).append(v - r)
            counts[("neither", "reference_only", "variant_only", "both")[2 * v + r]] += 1
    pairs = sum(counts.values())
    if not pairs:
        raise ValueError("paired_comparison: the variant and the reference share no question_id")
    low, high = bootstrap_mean_interval(list(groups.values()), resamples, seed, confidence)
    return {
        "seeds": len(variant_seeds),
        "questions": len(groups),
        "pairs": pairs,
        "unpaired": unpaired,
        **counts,
        "variant_acc": (counts["both"] + counts["variant_only"]) / pairs,
        "reference_acc": (counts["both"] + counts["reference_only"]) / pairs,
        "mean_difference": (counts["variant_only"] - counts["reference_only"]) / pairs,
        "ci_low": low,
        "ci_high": high,
        "bootstrap_resamples": resamples,
        "bootstrap_seed": seed,
        "mcnemar_p": mcnemar_exact(counts["variant_only"], counts["reference_only"]),
    }
