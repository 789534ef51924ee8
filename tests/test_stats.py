"""vggbench.stats on constructed numbers with known answers."""
import math

import pytest
from scipy import stats as st

from vggbench import stats


def test_t_interval_matches_the_textbook():
    iv = stats.t_interval([1.0, 2.0, 3.0])
    half = st.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of 1, 2, 3 is 1
    assert iv.estimate == pytest.approx(2.0)
    assert (iv.low, iv.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert half == pytest.approx(2.4841, abs=1e-4)
    assert iv.n == 3


def test_paired_interval_agrees_with_scipy_ttest_rel():
    t = {0: 71.2, 1: 70.4, 2: 72.9, 3: 71.8}
    c = {0: 69.0, 1: 69.5, 2: 70.1, 3: 70.3}
    iv = stats.effect(t, c)
    ref = st.ttest_rel([t[s] for s in range(4)], [c[s] for s in range(4)]).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high))
    assert iv.method == "paired t over 4 seeds"


def test_welch_interval_agrees_with_scipy_when_no_seed_is_shared():
    t = {0: 71.2, 1: 70.4, 2: 72.9}
    c = {10: 69.0, 11: 69.5, 12: 70.1, 13: 68.0}
    iv = stats.effect(t, c)
    ref = st.ttest_ind(list(t.values()), list(c.values()), equal_var=False).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high))
    assert iv.method.startswith("Welch")


def test_clear_effect_is_reproduced():
    t = {0: 80.0, 1: 81.0, 2: 82.0, 3: 80.5}
    c = {0: 70.0, 1: 70.5, 2: 71.0, 3: 70.2}
    iv = stats.effect(t, c)
    assert iv.low > 0
    assert stats.verdict(iv, "greater")[0] == "reproduced"
    assert stats.verdict(iv, "less")[0] == "contradicted"


def test_reversed_effect_is_contradicted():
    iv = stats.effect({0: 60.0, 1: 61.0, 2: 59.5}, {0: 65.0, 1: 66.5, 2: 64.0})
    assert iv.high < 0
    verdict, why = stats.verdict(iv, "greater")
    assert verdict == "contradicted" and "reversed" in why


def test_overlapping_noise_is_inconclusive():
    iv = stats.effect({0: 70.0, 1: 73.0, 2: 69.0}, {0: 71.0, 1: 70.0, 2: 70.5})
    assert iv.low < 0 < iv.high
    assert stats.verdict(iv, "greater") == ("inconclusive", "CI spans 0")


def test_one_seed_is_too_few():
    iv = stats.effect({0: 90.0}, {0: 10.0})
    assert iv.estimate == pytest.approx(80.0) and not iv.defined
    verdict, why = stats.verdict(iv, "greater")
    assert verdict == "inconclusive" and "too few seeds" in why


def test_two_seeds_with_a_huge_consistent_effect_can_still_reproduce():
    iv = stats.effect({0: 60.0, 1: 61.0}, {0: 10.0, 1: 10.2})  # stalled vs trained
    assert stats.verdict(iv, "greater")[0] == "reproduced"


def test_pairing_removes_the_seed_effect():
    # Seeds differ a lot, the treatment is +1 on every seed: paired sees it, unpaired cannot.
    control = {0: 10.0, 1: 50.0, 2: 90.0}
    treatment = {s: v + 1.0 + 0.01 * s for s, v in control.items()}
    assert stats.verdict(stats.effect(treatment, control), "greater")[0] == "reproduced"
    unpaired = stats.effect({s + 100: v for s, v in treatment.items()}, control)
    assert unpaired.method.startswith("Welch")
    assert stats.verdict(unpaired, "greater")[0] == "inconclusive"


def test_only_shared_seeds_are_paired():
    diffs = stats.paired_differences({0: 5.0, 1: 6.0, 2: 7.0}, {1: 1.0, 2: 2.0, 3: 3.0})
    assert diffs == {1: 5.0, 2: 5.0}


def test_missing_values_are_dropped():
    iv = stats.effect({0: 80.0, 1: None, 2: 81.0, 3: math.nan}, {0: 70.0, 1: 70.0, 2: 71.5, 3: 70.0})
    assert iv.n == 2


def test_no_better_than_with_a_margin():
    same = stats.effect({0: 70.1, 1: 69.9, 2: 70.3, 3: 70.0}, {0: 70.0, 1: 70.0, 2: 70.2, 3: 70.1})
    assert stats.verdict(same, "not_greater", margin=1.0)[0] == "reproduced"
    worse = stats.effect({0: 60.0, 1: 61.0, 2: 60.5}, {0: 70.0, 1: 70.0, 2: 70.2})
    assert stats.verdict(worse, "not_greater", margin=1.0)[0] == "reproduced"
    better = stats.effect({0: 75.0, 1: 76.0, 2: 75.5}, {0: 70.0, 1: 70.0, 2: 70.2})
    assert stats.verdict(better, "not_greater", margin=1.0)[0] == "contradicted"
    noisy = stats.effect({0: 74.0, 1: 66.0, 2: 71.0}, {0: 70.0, 1: 70.0, 2: 70.2})
    assert stats.verdict(noisy, "not_greater", margin=1.0)[0] == "inconclusive"


def test_exact_metrics_need_no_spread():
    iv = stats.effect({0: 1.2}, {0: 2.0}, exact=True)
    assert (iv.low, iv.high) == pytest.approx((-0.8, -0.8)) and iv.exact
    assert stats.verdict(iv, "less")[0] == "reproduced"


def test_identical_values_give_a_zero_width_interval():
    iv = stats.effect({0: 10.0, 1: 10.0}, {0: 10.0, 1: 10.0})  # e.g. both stalled at chance
    assert (iv.low, iv.high) == (0.0, 0.0)
    assert stats.verdict(iv, "greater")[0] == "inconclusive"


def test_mean_std():
    assert stats.mean_std([]) == (pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True), 0)
    m, sd, n = stats.mean_std([2.0, 4.0, None])
    assert (m, sd, n) == (3.0, pytest.approx(math.sqrt(2)), 2)


def test_unknown_expectation_is_an_error():
    with pytest.raises(ValueError, match="unknown expectation"):
        stats.verdict(stats.t_interval([1.0, 2.0]), "bigger")
