import numpy as np
import pytest

from ssm_jax import Config, ConfigError, class_counts_of, longtail_counts, make_problem, step_counts
from ssm_jax.problem import continuous_counts


def test_step_counts():
    assert step_counts(2, 3, 100, 10) == (100, 100, 10, 10, 10)
    assert step_counts(1, 1, 5, 1000) == (5, 1)  # never below one example
    assert step_counts(1, 1, 100, 3) == (100, 33)


def test_longtail_counts_decay_geometrically():
    counts = longtail_counts(5, 160, 16)
    assert counts == (160, 80, 40, 20, 10)


def test_config_counts_override_profile():
    assert class_counts_of(Config(counts=(3, 2, 1))) == (3, 2, 1)
    assert class_counts_of(Config(profile="longtail", k_major=2, k_minor=1, n_major=40,
                                  ratio=4)) == (40, 20, 10)


def test_problem_arrays_and_padding():
    p = make_problem((3, 1), n_pad=6)
    np.testing.assert_array_equal(p.labels, [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(p.mask, [1, 1, 1, 1, 0, 0])
    Y = np.asarray(p.onehot())
    assert Y.shape == (2, 6)
    np.testing.assert_array_equal(Y.sum(axis=1), [3, 1])
    np.testing.assert_allclose(p.priors(), [0.75, 0.25])
    np.testing.assert_array_equal(p.example_counts(), [3, 1])


def test_continuous_counts_match_integer_counts():
    cfg = Config(k_major=2, k_minor=2, n_major=100, ratio=4)
    np.testing.assert_allclose(continuous_counts(cfg), class_counts_of(cfg))
    np.testing.assert_allclose(continuous_counts(cfg, 3.0)[-1], 100 / 3, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ratio": 0.5}, "ratio=0.5"),
        ({"counts": (3, 0)}, "counts=0 must be an integer >= 1"),  # the declared bound
        ({"counts": (3, 1.5)}, "counts=1.5 must be an integer"),
        ({"dim": 0}, "dim=0"),
        ({"gamma": float("nan")}, "gamma=nan"),
        ({"beta": float("inf")}, "beta=inf"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"loss": "hinge"}, "loss='hinge'"),
        ({"weighting": "x"}, "weighting='x'"),
        ({"parametrization": "y"}, "parametrization='y'"),
        ({"method": "sgdx"}, "method='sgdx'"),
        ({"steps": 0}, "steps=0"),
        ({"saves": 1}, "saves=1"),
        ({"weighting": "explicit"}, "explicit"),
        ({"weights": (1.0, 2.0)}, "weights has 2 entries"),
        ({"init": "aligned", "dim": 4}, "dim=4"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0"),
    ],
)
def test_bad_config_raises_naming_the_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Config(**kwargs)
