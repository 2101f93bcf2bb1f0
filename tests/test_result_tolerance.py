"""The comparison every cross-process test uses: floats within tolerance, the rest exact."""

import pytest
from helpers.result_tolerance import assert_same_results


def test_last_bit_float_differences_pass():
    one = {"lm_loss": 5.050709366798401, "num_samples": 24, "em_by_type": {"style": 0.5}}
    two = {"lm_loss": 5.0507093866666155, "num_samples": 24, "em_by_type": {"style": 0.5}}
    assert_same_results(two, one)


@pytest.mark.parametrize(
    "changed",
    [
        {"lm_loss": 5.0508},  # a real difference in a float
        {"num_samples": 23},  # counts are exact
        {"em_by_type": {"style": 0.5, "shape": 0.1}},  # keys are exact
        {"prediction": "cubism"},  # texts are exact
    ],
)
def test_real_differences_fail(changed):
    expected = {"lm_loss": 5.0507, "num_samples": 24, "em_by_type": {"style": 0.5}, "prediction": "pop art"}
    with pytest.raises(AssertionError):
        assert_same_results({**expected, **changed}, expected)
