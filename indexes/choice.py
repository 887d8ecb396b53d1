"""Choose a compact index for a corpus by a stated rule: the smallest in-memory footprint whose recall@k against
exact search, on the corpus's own vectors and held-out queries, reaches a target.

Candidates are tried smallest first (bytes per vector of the codes), each at its search settings cheapest first
(nprobe for IVF, then the oversampling factor: memory is the rule's axis, and rescoring more candidates costs time,
not memory); each is built on the corpus vectors and searched as a served index directory searches: its codes' top
k x oversample rescored exactly from fp16 rows (the vector file). The first to reach the target wins; when none
does, the last (the largest) is kept and the choice says so. Queries must not be test queries: the caller passes
held-out ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexes.exact import exact_search
from indexes.faiss_index import (
    DEFAULT_OVERSAMPLE,
    IndexSpec,
    apply_search_params,
    build_index,
    bytes_per_vector,
    default_nlist,
    default_search_params,
    validate_factory,
)
from indexes.rescore import Rescorer

logger = logging.getLogger(__name__)

TARGET_RECALL = 0.99
IVF_FROM = 100_000  # documents from which candidates partition the corpus (IVF) instead of scanning every code
# smallest codes first: 4-bit fast-scan PQ at dim/8 bytes... (dim/2 bits), 1-bit RaBitQ (dim/8 bytes + 8), SQ4, SQ8
FLAT_CANDIDATES = ("PQ{m}x4fs", "RaBitQfs", "SQ4", "SQ8")
IVF_CANDIDATES = ("IVF{nlist},PQ{m}x4fsr", "IVF{nlist},RaBitQfs", "IVF{nlist},SQ4", "IVF{nlist},SQ8")
NPROBES = (8, 16, 32, 64, 128)
OVERSAMPLES = (DEFAULT_OVERSAMPLE, 8, 16)


@dataclass(frozen=True)
class ChoiceRule:
    """Recall@`k` vs exact search >= `target`, rescoring `oversamples` x k candidates, over `candidates` (templates
    with `{m}` = dim/8 and `{nlist}` ~ 4 sqrt(N)); IVF candidates from `ivf_from` documents, at `nprobes`."""

    target: float = TARGET_RECALL
    k: int = 10
    oversamples: tuple[float, ...] = OVERSAMPLES
    ivf_from: int = IVF_FROM
    flat_candidates: tuple[str, ...] = FLAT_CANDIDATES
    ivf_candidates: tuple[str, ...] = IVF_CANDIDATES
    nprobes: tuple[int, ...] = NPROBES
    seed: int = 0

    def describe(self) -> str:
        return (
            f"the smallest in-memory index whose recall@{self.k} against exact search reaches {self.target} on "
            f"held-out queries, rescoring {' / '.join(f'{o:g}' for o in self.oversamples)} x k candidates from the "
            "vector file"
        )


@dataclass(frozen=True)
class IndexChoice:
    """The chosen factory and search parameters, the rule, and every candidate measured on the way."""

    factory: str
    search_params: dict[str, float]
    template: str  # the candidate it resolved from, e.g. PQ{m}x4fs (`resolve` fits it to vectors of another size)
    recall: float
    bytes_per_vector: float
    met_target: bool
    rule: str
    tried: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "factory": self.factory,
            "template": self.template,
            "search_params": self.search_params,
            "recall": self.recall,
            "bytes_per_vector": self.bytes_per_vector,
            "met_target": self.met_target,
            "rule": self.rule,
            "tried": self.tried,
        }

    def resolve(self, n: int, dim: int) -> str:
        """The chosen candidate for `n` vectors of `dim` dimensions (another encoder's documents)."""
        return resolve_candidate(self.template, n, dim)


def resolve_candidate(template: str, n: int, dim: int) -> str:
    """`template` with `{m}` = dim/8 and `{nlist}` for `n` vectors (raises ValueError when it does not fit `dim`)."""
    factory = template.format(m=max(1, dim // 8), nlist=default_nlist(n))
    validate_factory(factory, dim)
    return factory


def candidate_templates(n: int, dim: int, rule: ChoiceRule) -> list[tuple[str, str]]:
    """The rule's candidates for `n` vectors of `dim` dimensions as (template, factory), valid ones only, smallest
    first."""
    templates = rule.ivf_candidates if n >= rule.ivf_from else rule.flat_candidates
    resolved = []
    for template in templates:
        try:
            resolved.append((template, resolve_candidate(template, n, dim)))
        except ValueError:
            continue
    return resolved


def candidate_factories(n: int, dim: int, rule: ChoiceRule) -> list[str]:
    """The rule's candidates for `n` vectors of `dim` dimensions, resolved and valid, smallest first."""
    return [factory for _, factory in candidate_templates(n, dim, rule)]


def choose_index(docs: np.ndarray, queries: np.ndarray, rule: ChoiceRule | None = None) -> IndexChoice:
    """Apply `rule` to the corpus vectors `docs` with held-out `queries` (unit vectors, inner product)."""
    rule = rule or ChoiceRule()
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(docs) < 2 or len(queries) < 1:
        raise ValueError(
            f"need at least 2 documents and 1 query to choose an index, got {len(docs)} and {len(queries)}"
        )
    k = min(rule.k, len(docs))
    _, truth = exact_search(queries, docs, k)
    truth_sets = [set(row) for row in truth.tolist()]
    rows_fp16 = docs.astype(np.float16)
    tried: list[dict[str, Any]] = []
    last: IndexChoice | None = None
    for template, factory in candidate_templates(len(docs), docs.shape[1], rule):
        started = time.perf_counter()
        try:
            index = build_index(docs, IndexSpec(factory, seed=rule.seed)).index
        except ValueError as err:  # too few vectors to train this one
            tried.append({"factory": factory, "error": str(err)})
            continue
        size = bytes_per_vector(index)
        probes = [{"nprobe": p} for p in rule.nprobes if p <= index.nlist] if hasattr(index, "nlist") else [{}]
        settings = [(probe, oversample) for probe in probes or [{}] for oversample in rule.oversamples]
        for setting, oversample in settings:
            params = {**default_search_params(factory), **setting}
            apply_search_params(index, params)
            found = Rescorer.from_array(index, rows_fp16, oversample).search(queries, k).positions
            recall = float(np.mean([len(truth_sets[i] & set(row)) / k for i, row in enumerate(found.tolist())]))
            params["oversample"] = oversample
            tried.append({"factory": factory, "search_params": params, "recall": recall, "bytes_per_vector": size,
                          "seconds": time.perf_counter() - started})  # fmt: skip
            logger.info("index choice: %s %s recall@%d %.4f at %.1f B/vector", factory, params, k, recall, size)
            last = IndexChoice(factory, params, template, recall, size, recall >= rule.target, rule.describe(), tried)
            if recall >= rule.target:
                return last
    if last is None:
        raise ValueError(f"no candidate index could be built on {len(docs)} vectors: {tried}")
    logger.warning("no candidate reached recall@%d %.3f; keeping the largest, %s (%.4f)", k, rule.target,
                   last.factory, last.recall)  # fmt: skip
    return last
