"""The protocol's paired comparison (d3d_tf.metrics.paired): gaps, intervals and verdicts."""
import numpy as np
import pytest

from d3d_tf.metrics import paired


def _cells(gaps_by_data_seed, *, train_seeds=2, videos=400, base=0.6, seed=0):
    """Cells whose B is A with a fraction `gap` of A's wrong videos turned right (or, for a
    negative gap, of A's right videos turned wrong): paired, like two networks that agree on
    most videos."""
    rng = np.random.default_rng(seed)
    cells = []
    for d, gap in gaps_by_data_seed.items():
        for s in range(train_seeds):
            a = (rng.random(videos) < base).astype(float)
            b = a.copy()
            flip = rng.choice(videos, size=int(abs(gap) * videos), replace=False)
            b[flip] = 1.0 if gap > 0 else 0.0
            cells.append(paired.Cell(d, s, a, b))
    return cells


def test_a_consistent_gain_is_claimed_with_an_interval_around_it():
    result = paired.compare(_cells({11: 0.15, 12: 0.15, 13: 0.15}), draws=2000)
    assert 0.05 < result.pooled.mean < 0.15  # flips onto already-right videos do nothing
    assert 0 < result.pooled.low < result.pooled.mean < result.pooled.high
    assert result.signs() == (3, 0)
    assert result.verdict() == "B > A"
    assert set(result.cells) == {(d, s) for d in (11, 12, 13) for s in (0, 1)}
    assert result.videos == {11: 400, 12: 400, 13: 400}


def test_a_consistent_loss_is_claimed_the_other_way():
    result = paired.compare(_cells({1: -0.2, 2: -0.2}), draws=2000)
    assert result.pooled.high < 0
    assert result.verdict() == "B < A"


def test_a_sign_that_flips_in_one_data_seed_is_no_claim_even_with_a_positive_interval():
    cells = _cells({1: 0.3, 2: 0.3, 3: 0.3, 4: -0.02}, train_seeds=1)
    result = paired.compare(cells, draws=2000)
    assert result.per_data_seed[4].mean < 0
    assert result.signs() == (3, 1)
    assert result.verdict() == "no claim"


def test_pairing_makes_a_small_shared_gain_significant():
    # A and B differ on only 2 % of 400 videos per cell; unpaired, two accuracies of ~60 % on
    # 400 videos each have intervals of about +-5 points and would overlap.
    result = paired.compare(_cells({1: 0.05, 2: 0.05, 3: 0.05}), draws=2000)
    assert result.pooled.mean < 0.03
    assert result.pooled.low > 0
    assert result.verdict() == "B > A"


def test_no_difference_is_rarely_claimed():
    # Independent A and B of the same accuracy: the rule may claim a gain by chance only
    # rarely (it needs the pooled interval above 0 AND every data seed's sign).
    rng = np.random.default_rng(7)
    claims = 0
    for rep in range(60):
        cells = [paired.Cell(d, s, (rng.random(100) < 0.7).astype(float),
                             (rng.random(100) < 0.7).astype(float))
                 for d in range(3) for s in range(2)]
        claims += paired.compare(cells, draws=400, seed=rep).verdict() != "no claim"
    assert claims <= 3


def test_interval_widens_with_disagreement_between_data_seeds():
    same = paired.compare(_cells({1: 0.1, 2: 0.1, 3: 0.1}), draws=2000)
    spread = paired.compare(_cells({1: 0.02, 2: 0.1, 3: 0.25}), draws=2000)
    assert spread.pooled.high - spread.pooled.low > 1.5 * (same.pooled.high - same.pooled.low)


def test_continuous_values_and_determinism():
    rng = np.random.default_rng(3)
    a = rng.normal(2.0, 0.5, size=(2, 80))  # e.g. a probe's EPE per clip, pixels
    cells = [paired.Cell(5, s, a[s], a[s] - 0.3) for s in range(2)]
    first = paired.compare(cells, draws=500, seed=1)
    assert first.pooled.mean == pytest.approx(-0.3)
    assert first.pooled.low == pytest.approx(-0.3) and first.pooled.high == pytest.approx(-0.3)
    assert first.verdict() == "B < A"
    assert paired.compare(cells, draws=500, seed=1) == first


@pytest.mark.parametrize("cells, message", [
    ([], "no cells"),
    ([paired.Cell(1, 0, np.ones(4), np.ones(5))], "data seed 1"),
    ([paired.Cell(1, 0, np.ones(4), np.ones(4)), paired.Cell(1, 0, np.ones(4), np.ones(4))],
     "listed twice"),
    ([paired.Cell(2, 0, np.ones(0), np.ones(0))], "non-empty"),
])
def test_bad_cells_are_refused_with_the_data_seed(cells, message):
    with pytest.raises(ValueError, match=message):
        paired.compare(cells, draws=10)


def test_power_is_the_rate_of_claims_over_simulated_rounds():
    # A gain far above its spread is claimed in every round; no gain almost never; a gain
    # near the spread in between, and more often with more training seeds per data seed.
    kw = {"videos": 100, "draws": 300}
    assert paired.power(0.3, 0.01, rounds=5, **kw) == 1.0
    assert paired.power(0.0, 0.1, rounds=20, **kw) <= 0.05
    few = paired.power(0.07, 0.1, train_seeds=2, rounds=30, **kw)
    many = paired.power(0.07, 0.1, train_seeds=8, rounds=30, **kw)
    assert 0.05 < few < many
    assert paired.power(0.07, 0.1, rounds=10, seed=3, **kw) == \
        paired.power(0.07, 0.1, rounds=10, seed=3, **kw)
