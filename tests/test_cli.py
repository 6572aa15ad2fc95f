"""The command line: exit statuses, files written (or not), the demo."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ssm_jax.cli import main

SMALL = ["--counts", "6,3", "--dim", "4", "--steps", "20", "--saves", "3"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratio", "0.5"], "ratio=0.5"),
        (["--counts", "5,0"], "counts"),
        (["--counts", "5,x"], "counts"),
        (["--dim", "0"], "dim=0"),
        (["--gamma", "nan"], "gamma=nan"),
        (["--beta", "inf"], "beta=inf"),
        (["--lr", "inf"], "lr=inf"),
        (["--loss", "hinge"], "hinge"),
        (["--method", "lbfgs"], "lbfgs"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run.json"
    with pytest.raises(SystemExit) as exc:
        code = main(["simulate", *args, "--json", str(out)])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_simulate_writes_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["simulate", *SMALL, "--weighting", "power", "--gamma", "1", "--json",
                 str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["class_counts"] == [6, 3]
    np.testing.assert_allclose(np.dot(data["weights"], [6, 3]) / 9, 1.0, rtol=1e-6)
    assert data["config"]["gamma"] == 1.0 and data["diverged"] is False
    assert len(data["t"]) == 3 and len(data["own_output"][0]) == 2
    assert "balanced accuracy" in capsys.readouterr().out


def test_diverging_run_exits_3_and_says_so(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["simulate", *SMALL, "--lr", "1e5", "--init-scale", "0.5", "--json",
                 str(out)]) == 3
    assert "diverged" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["diverged"] is True and isinstance(data["diverged_step"], int)


def test_demo_writes_figure_and_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    runs = summary["runs"]
    assert set(runs) == {"mse", "ce"} and set(runs["mse"]) == {"erm", "gamma=1/2", "gamma=1"}
    # The headline: ERM delays the minority; gamma = 1/2 equalises the squared-loss half times.
    assert runs["mse"]["erm"]["half_delay_ratio"] > 2.0
    assert abs(runs["mse"]["gamma=1/2"]["half_delay_ratio"] - 1.0) < 0.2
    assert runs["ce"]["erm"]["learn_delay_ratio"] > 2.0
    assert runs["ce"]["gamma=1"]["learn_delay_ratio"] < 1.0
    assert "delay" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "ssm_jax", "--help"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "simulate" in done.stdout
