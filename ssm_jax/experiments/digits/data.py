"""The data: scikit-learn's bundled 8 x 8 digits, a balanced test split and a
step-imbalanced training set, standardised with training statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import NUM_CLASSES, DigitsConfig


@dataclass(frozen=True)
class DigitsData:
    """Standardised images (n, 64) and labels, laid out digit by digit, the counts per
    digit, and the rows of ``sklearn.datasets.load_digits()`` each split took."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    train_index: np.ndarray
    test_index: np.ndarray


def load_data(cfg: DigitsConfig) -> DigitsData:
    """Balanced test split and step-imbalanced training set of the bundled digits.

    Per digit the examples are shuffled with ``split_seed``; the first ``test_per_class``
    go to the test set and the next ``train_counts[digit]`` to the training set (so a
    minority digit's training examples are a subset of what it would have as a majority).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, targets = bunch.data.astype(np.float64), bunch.target
    rng = np.random.default_rng(cfg.split_seed)
    counts = cfg.train_counts()
    train_index, test_index = [], []
    for digit in range(NUM_CLASSES):
        order = rng.permutation(np.flatnonzero(targets == digit))
        test_index.append(order[: cfg.test_per_class])
        train_index.append(order[cfg.test_per_class: cfg.test_per_class + counts[digit]])
    train_index, test_index = np.concatenate(train_index), np.concatenate(test_index)
    x_train, x_test = images[train_index], images[test_index]
    mean = x_train.mean(axis=0)
    std = np.maximum(x_train.std(axis=0), 1.0)  # constant border pixels stay ~0
    return DigitsData(
        x_train=(x_train - mean) / std, y_train=targets[train_index].astype(np.int32),
        x_test=(x_test - mean) / std, y_test=targets[test_index].astype(np.int32),
        train_counts=tuple(int(c) for c in np.bincount(targets[train_index], minlength=10)),
        test_counts=tuple(int(c) for c in np.bincount(targets[test_index], minlength=10)),
        train_index=train_index, test_index=test_index,
    )
