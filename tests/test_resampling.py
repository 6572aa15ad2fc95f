"""Resampling against reweighting under minibatch SGD (ssm_jax.experiments.resampling and
``ssm-jax resampling``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssm_jax import Config
from ssm_jax.cli import main
from ssm_jax.config import ConfigError
from ssm_jax.experiments import resampling

SMALL = dict(k_major=2, k_minor=2, n_major=40, ratio=8.0, dim=8, saves=21, batch_size=8,
             init_scale=1e-3)


def test_resampling_matches_reweighting_in_expectation_and_is_stable_where_it_is_not():
    result = resampling.compare(Config(**SMALL), [0.5, 4.0], 400.0, seeds=3)
    assert result["gamma"] == 1.0 and set(result["arms"]) == set(resampling.ARMS)
    small, large = 0, 1
    full = result["arms"]["reweight_full_batch"][small]["delay"][0]
    # at a small learning rate both stochastic arms follow the reweighted flow: the delay
    # R^(1/2 - gamma) of the sample UFM (8^-1/2 = 0.35), against ERM's R^(1/2) = 2.8
    for arm in ("reweight", "resample"):
        row = result["arms"][arm][small]
        assert row["diverged"] == 0.0
        assert row["delay"][0] == pytest.approx(full, rel=0.12), arm
    assert result["arms"]["erm"][small]["delay"][0] > 2.0
    assert full == pytest.approx(8 ** -0.5, rel=0.15)
    # at a large one the reweighted minibatches (a minority example counts omega_c n / B
    # when drawn) diverge; resampled ones (n / B, more often) do not
    assert result["arms"]["reweight"][large]["diverged"] == 1.0
    assert result["arms"]["resample"][large]["diverged"] == 0.0
    assert np.isnan(result["arms"]["reweight"][large]["delay"][0])


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": None}, "needs minibatches"),
    ({"weighting": "power", "gamma": 1.0}, "leave weighting='erm'"),
    ({"sampling": "sqrt"}, "leave weighting='erm' and sampling='uniform'"),
])
def test_the_base_configuration_leaves_the_arms_to_the_comparison(changes, message):
    with pytest.raises(ConfigError, match=message):
        resampling.compare(Config(**{**SMALL, **changes}), [1.0], 10.0, seeds=1)


def test_command_line_refuses_bad_input_before_running(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["resampling", "--weighting", "power", "--gamma", "1", "--out", str(out)]) == 2
    assert "leave weighting='erm'" in capsys.readouterr().err
    assert main(["resampling", "--lrs", "1,-2", "--out", str(out)]) == 2
    with pytest.raises(SystemExit) as parsed:
        main(["resampling", "--time", "nan", "--out", str(out)])
    assert parsed.value.code == 2
    assert not out.exists()


def test_command_line_writes_the_comparison(tmp_path):
    out = tmp_path / "out"
    status = main(["resampling", "--k-major", "1", "--k-minor", "1", "--n-major", "16",
                   "--ratio", "4", "--dim", "4", "--saves", "6", "--batch-size", "4",
                   "--lrs", "0.5", "--time", "40", "--seeds", "2", "--out", str(out)])
    assert status in (0, 3)
    record = json.loads((out / "resampling.json").read_text())
    assert record["batch_size"] == 4 and record["lrs"] == [0.5]
    assert set(record["arms"]) == {"erm", "reweight", "resample", "reweight_full_batch"}
    row = record["arms"]["resample"][0]
    assert set(row) == {"lr", "delay", "diverged", "majority_half_time", "minority_half_time",
                        "balanced_accuracy"}
    assert (out / "resampling.png").stat().st_size > 0
