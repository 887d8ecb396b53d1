"""The order texts are trained in: batches cut from a permutation, grouped by length (less padding) or by k-means
neighbourhood of their teacher vectors (harder in-batch comparisons)."""

from __future__ import annotations

import numpy as np

from semsearch_common.errors import MissingDependencyError

LENGTH_GROUP_BATCHES = 16


def cut_batches(order: np.ndarray, batch_size: int, min_size: int) -> list[np.ndarray]:
    """Consecutive runs of `batch_size` rows of `order`; a last run shorter than `min_size` is dropped."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batch for batch in batches if len(batch) >= min_size]


def length_grouped(order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Reorder `order` so each run of `batch_size` holds texts of similar length: windows of LENGTH_GROUP_BATCHES
    batches are sorted by length and cut into batches, then the batches are shuffled. Padding is per batch, so this
    roughly halves the compute of a batch of mixed sentences and passages."""
    window = batch_size * LENGTH_GROUP_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) != batch_size]
    shuffled = [full[i] for i in rng.permutation(len(full))]
    return np.concatenate(shuffled + partial) if shuffled or partial else order


def neighbour_order(targets: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the rows of `targets` in which consecutive runs of about `batch_size` rows are k-means
    neighbours: clusters (about one per batch) in random order, members shuffled within each cluster."""
    n = len(targets)
    clusters = max(1, n // batch_size)
    if clusters == 1:
        return rng.permutation(n)
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - core dependency
        raise MissingDependencyError("neighbour batching needs `pip install faiss-cpu`") from err
    data = np.ascontiguousarray(targets, dtype=np.float32)
    kmeans = faiss.Kmeans(data.shape[1], clusters, niter=10, seed=int(rng.integers(2**31 - 1)), spherical=True)
    kmeans.cp.min_points_per_centroid = 1
    kmeans.train(data)
    _, assignment = kmeans.index.search(data, 1)
    assignment = assignment.ravel()
    order = [rng.permutation(np.flatnonzero(assignment == c)) for c in rng.permutation(clusters)]
    return np.concatenate([members for members in order if len(members)])
