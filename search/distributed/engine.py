"""Ray, started or joined on demand: the lazy import, the engine's settings and a session that cleans up after itself.

A local instance is started with the dashboard off, worker output kept out of the driver's terminal and Ray's own
logs at WARNING; its files go where Ray puts them by default (`/tmp/ray/session_*`, and the token of Ray's token
authentication in `~/.ray/auth_token`). Usage statistics are Ray's to switch off: `RAY_USAGE_STATS_ENABLED=0`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from semsearch_common.errors import MissingDependencyError

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")  # where `semsearch index` builds: this process (`search.pipeline`), or Ray (this package)
INSTALL_HINT = "pip install -e '.[ray]'"
LOCAL_ADDRESS = "local"  # ray.init's word for "start a new local instance", whatever RAY_ADDRESS says


def require_ray() -> Any:
    """Import and return the `ray` module, or fail saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine encodes through Ray Data)
    except ImportError as err:
        raise MissingDependencyError(f"the Ray engine needs ray: {INSTALL_HINT}") from err
    return ray


@dataclass(frozen=True)
class RaySpec:
    """How to run an encoding on Ray.

    `address`: a cluster (`auto`, `HOST:PORT`, `ray://HOST:PORT`) or None for a new local instance; `workers`: encoder
    actors; `threads_per_worker`: the torch / ONNX Runtime intra-op threads of each actor, and the CPUs it reserves;
    `batch_size`: texts per Ray batch and per encoder call; `max_restarts` / `max_task_retries`: how often Ray restarts
    a dead encoder actor and retries the batch it was encoding (-1: without limit).
    """

    address: str | None = None
    workers: int = 1
    threads_per_worker: int = 1
    batch_size: int = 32
    max_restarts: int = 3
    max_task_retries: int = 3

    def __post_init__(self) -> None:
        if self.address is not None and not self.address.strip():
            raise ValueError("address must be None (a local Ray instance), 'auto', HOST:PORT or ray://HOST:PORT")
        for name in ("workers", "threads_per_worker", "batch_size"):
            if (value := getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("max_restarts", "max_task_retries"):
            if (value := getattr(self, name)) < -1:
                raise ValueError(f"{name} must be -1 (no limit), 0 (none) or a positive count, got {value}")

    @property
    def cpus(self) -> int:
        """CPUs the encoder actors reserve together (workers x threads), the size of a local instance."""
        return max(self.workers * self.threads_per_worker, 1)


@contextmanager
def ray_session(spec: RaySpec | None = None) -> Iterator[Any]:
    """Yield the `ray` module with Ray running: an already initialised Ray is reused and left running; otherwise
    Ray is joined at `spec.address` or started locally with `spec.cpus` CPUs, and shut down on exit."""
    spec = spec or RaySpec()
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if spec.address is None:
        ray.init(address=LOCAL_ADDRESS, num_cpus=spec.cpus, include_dashboard=False, **quiet)
        logger.info("started a local Ray instance with %d CPUs", spec.cpus)
    else:
        ray.init(address=spec.address, **quiet)
        logger.info("joined the Ray cluster at %s", spec.address)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class RayStatus:
    """The live nodes of the Ray instance in use and their CPUs (for logs and benchmark reports)."""

    nodes: int
    cpus: float
    node_cpus: tuple[float, ...]

    def describe(self) -> str:
        return f"Ray: {self.nodes} node(s), {self.cpus:g} CPUs ({', '.join(f'{c:g}' for c in self.node_cpus)})"


def ray_status() -> RayStatus:
    """CPUs of each live node of the running Ray instance; RuntimeError outside a session."""
    ray = require_ray()
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running: call ray_status() inside ray_session(...)")
    node_cpus = tuple(float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes() if node.get("Alive"))
    return RayStatus(nodes=len(node_cpus), cpus=sum(node_cpus), node_cpus=node_cpus)
