"""Seed spreads and paired bootstrap intervals, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from bireco.results.stats import paired_bootstrap, spread


def test_spread_is_mean_and_sample_sd() -> None:
    s = spread([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3) and s.n == 3
    assert s.sd == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert s.text() == "2.33 ± 1.53 (n=3)"
    one = spread([0.5])
    assert one.sd is None and one.text() == "0.50 (n=1)"  # one seed is labelled as one seed
    assert spread([]) is None


def test_a_constant_difference_has_a_zero_width_interval() -> None:
    a = {1: [0.5, 0.7, 0.9], 2: [0.4, 0.6, 0.8]}
    b = {s: [x - 0.1 for x in v] for s, v in a.items()}
    d = paired_bootstrap(a, b)
    assert (d.delta, d.low, d.high) == pytest.approx((0.1, 0.1, 0.1))
    assert not d.includes_zero and (d.seeds, d.units) == (2, 3)


def test_noise_around_zero_gives_an_interval_that_includes_zero() -> None:
    a = {1: [1.0, 0.0, 1.0, 0.0], 2: [0.0, 1.0, 0.0, 1.0]}
    b = {1: [0.0, 1.0, 0.0, 1.0], 2: [1.0, 0.0, 1.0, 0.0]}
    d = paired_bootstrap(a, b, n_boot=500)
    assert d.delta == pytest.approx(0.0) and d.includes_zero
    assert "(includes 0)" in d.text()


def test_only_shared_seeds_are_paired_and_units_must_match() -> None:
    d = paired_bootstrap({1: [1.0], 2: [2.0], 3: [9.0]}, {1: [0.0], 2: [1.0]})
    assert d.seeds == 2 and d.delta == pytest.approx(1.0)
    assert paired_bootstrap({1: [1.0]}, {2: [1.0]}) is None
    with pytest.raises(ValueError, match="must be paired"):
        paired_bootstrap({1: [1.0, 2.0]}, {1: [1.0]})
