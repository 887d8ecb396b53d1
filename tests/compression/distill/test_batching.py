"""Batch order: cutting, length grouping and k-means neighbour batches."""

from __future__ import annotations

import numpy as np

from compression.distill import cut_batches, length_grouped, neighbour_order


def test_cut_batches_drops_only_a_last_batch_below_the_minimum() -> None:
    order = np.arange(10)
    assert [b.tolist() for b in cut_batches(order, 4, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.tolist() for b in cut_batches(np.arange(9), 4, 2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_length_grouping_keeps_every_text_and_pads_less() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    order = length_grouped(rng.permutation(1000), lengths, 32, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))

    def padded_cost(permutation: np.ndarray) -> int:
        return sum(int(lengths[permutation[i : i + 32]].max()) * 32 for i in range(0, 1000, 32))

    assert padded_cost(order) < 0.7 * padded_cost(rng.permutation(1000))


def test_neighbour_order_is_a_permutation_whose_batches_are_teacher_neighbours() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    labels = rng.integers(0, 8, size=256)
    targets = centres[labels] + 0.1 * rng.normal(size=(256, 16))
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    order = neighbour_order(targets.astype(np.float32), batch_size=32, rng=np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(256))

    def mean_in_batch_cosine(permutation: np.ndarray) -> float:
        batches = [targets[permutation[i : i + 32]] for i in range(0, 256, 32)]
        return float(np.mean([np.mean(batch @ batch.T) for batch in batches]))

    assert mean_in_batch_cosine(order) > mean_in_batch_cosine(rng.permutation(256)) + 0.3
