import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import ConfigError, class_weights
from ssm_jax.weights import effective_number, normalise, power_law

COUNTS = jnp.array([100.0, 100.0, 10.0, 10.0, 1.0])


@pytest.mark.parametrize(
    "weighting, kwargs",
    [("erm", {}), ("power", {"gamma": 0.5}), ("power", {"gamma": 1.0}),
     ("effective", {"beta": 0.99}), ("explicit", {"explicit": jnp.array([1.0, 2, 3, 4, 5])})],
)
def test_mean_per_example_weight_is_one(weighting, kwargs):
    w = class_weights(COUNTS, weighting, **kwargs)
    np.testing.assert_allclose(jnp.sum(COUNTS * w) / jnp.sum(COUNTS), 1.0, rtol=1e-6)
    assert jnp.all(w > 0)


def test_power_law_values():
    # gamma = 1: w_c = n / (k n_c) for equal-size... in general w_c ∝ 1/n_c with sum n_c w_c = n.
    w = power_law(COUNTS, 1.0)
    n, k = COUNTS.sum(), COUNTS.size
    np.testing.assert_allclose(w, n / (k * COUNTS), rtol=1e-6)
    w_half = power_law(COUNTS, 0.5)
    np.testing.assert_allclose(w_half[2] / w_half[0], np.sqrt(10.0), rtol=1e-6)
    np.testing.assert_allclose(power_law(COUNTS, 0.0), jnp.ones(5), rtol=1e-6)


def test_effective_number_limits():
    # beta -> 0 is ERM; beta -> 1 tends to inverse frequency (effective number -> n_c).
    np.testing.assert_allclose(effective_number(COUNTS, 0.0), jnp.ones(5), rtol=1e-6)
    with jax.enable_x64(True):
        counts = COUNTS.astype(jnp.float64)
        np.testing.assert_allclose(effective_number(counts, 1 - 1e-9), power_law(counts, 1.0),
                                   rtol=1e-6)
        beta = 0.9
        raw = (1 - beta) / (1 - beta ** np.asarray(counts))
        np.testing.assert_allclose(effective_number(counts, beta), normalise(raw, counts),
                                   rtol=1e-12)


def test_weights_are_differentiable_in_gamma():
    with jax.enable_x64(True):
        counts = COUNTS.astype(jnp.float64)
        f = lambda g: power_law(counts, g)[-1]  # noqa: E731
        eps = 1e-6
        fd = (f(1.0 + eps) - f(1.0 - eps)) / (2 * eps)
        np.testing.assert_allclose(jax.grad(f)(1.0), fd, rtol=1e-6)


def test_unknown_weighting_raises():
    with pytest.raises(ConfigError, match="weighting='bogus'"):
        class_weights(COUNTS, "bogus")


def test_integer_counts_give_the_same_weights_as_float_counts():
    """Integer counts (e.g. a tuple from class_counts_of) must not truncate gamma."""
    counts = (40, 40, 4, 4)
    for weighting, gamma in (("power", 0.5), ("power", 1.0), ("effective", 0.0)):
        np.testing.assert_allclose(class_weights(np.array(counts), weighting, gamma),
                                   class_weights(np.array(counts, float), weighting, gamma),
                                   rtol=1e-6)
    w = class_weights(np.array(counts), "power", 0.5)
    np.testing.assert_allclose(w[2] / w[0], np.sqrt(10.0), rtol=1e-6)
