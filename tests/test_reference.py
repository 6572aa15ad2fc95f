"""The package reproduces its float64 reference set to 1e-12.

What this protects: the numbers. ``tests/data/reference.npz`` holds 27 small runs
(``tests/reference_cases.py``: every loss, method, flow solver, parametrisation, weighting
and profile, bias, weight decay, depth, aligned init, the reduced simulator on and off,
geometry, kept parameters, a diverging run, two sweeps and four meta-gradients), computed
in float64 through the public API only. A refactoring must reproduce every array to
``rtol = atol = 1e-12`` (NaN where NaN was) and produce exactly the same keys, so a
restructuring that moves code, renames internals or reorders operations passes, and one
that changes a result, or drops or adds a recorded quantity, fails here.

Regenerate the file only for a numerical change that is intended and explained (say which
change and why in the commit that updates it)::

    .venv/bin/python tests/reference_cases.py
"""

from __future__ import annotations

import numpy as np
import pytest
from reference_cases import CASES, DATA

RTOL = ATOL = 1e-12


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, np.ndarray]]:
    """The stored records: case -> {key: array} (file keys are ``case/key``)."""
    records: dict[str, dict[str, np.ndarray]] = {}
    with np.load(DATA) as data:
        for name in data.files:
            case, key = name.split("/", 1)
            records.setdefault(case, {})[key] = data[name]
    return records


def test_cases_match_the_file(reference):
    assert set(reference) == set(CASES), (
        f"cases only in the file: {sorted(set(reference) - set(CASES))}; "
        f"only in reference_cases.py: {sorted(set(CASES) - set(reference))}"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduces_reference(case, reference):
    expected = reference[case]
    actual = CASES[case]()
    assert set(actual) == set(expected), (
        f"{case}: keys missing now: {sorted(set(expected) - set(actual))}; "
        f"new keys: {sorted(set(actual) - set(expected))}"
    )
    for key, want in expected.items():
        got = np.asarray(actual[key])
        where = f"{case}/{key}"
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        assert got.dtype.kind == want.dtype.kind, f"{where}: dtype {got.dtype} != {want.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True,
                                       err_msg=where)
        else:  # bool, integer (steps, counts) and text (solver status): exactly
            np.testing.assert_array_equal(got, want, err_msg=where)
