"""The uplift interval: Newcombe's hybrid score interval, and plain words for what it allows."""

import numpy as np
import pytest

from models.uplift import uplift


def test_newcombe_interval_matches_the_published_example():
    """Newcombe (1998), Statistics in Medicine 17, table II: 56/70 vs 48/80, method 10: 0.0524 to 0.3339."""
    u = uplift(np.arange(70) < 56, np.arange(80) < 48, confidence=0.95, min_group=30)
    assert u.uplift == pytest.approx(56 / 70 - 48 / 80)
    assert (u.low, u.high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert u.conclusive and "retained more" in u.verdict


def test_a_small_group_that_retains_everyone_still_has_a_wide_interval_and_says_so():
    u = uplift(np.ones(200, bool), np.ones(5, bool), min_group=30)
    assert u.uplift == 0 and u.low < 0 and u.high > 0.3  # the normal approximation: [0, 0]
    assert not u.conclusive and "too small to conclude" in u.verdict


def test_an_interval_across_zero_shows_no_effect():
    u = uplift(np.arange(100) < 90, np.arange(100) < 88, min_group=30)
    assert u.low < 0 < u.high and u.verdict.startswith("no effect shown")
