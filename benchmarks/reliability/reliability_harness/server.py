"""The server under test: `semsearch serve` from a chosen source tree, on loopback, started, probed, and killed.

The harness owns the process so it can restart a server that a hostile request has wedged (a server that keeps
computing a large batch after its client left) and measure the next case on a fresh one. `parse_pipelines` reads the
NAME=DIR pipelines it serves, for every tool that starts one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from search.sources import parse_sources

logger = logging.getLogger(__name__)


def parse_pipelines(items: Sequence[str]) -> tuple[tuple[str, Path], ...]:
    """NAME=DIR items (`search.sources.parse_sources`), each DIR resolved; each DIR must exist."""
    sources = parse_sources(items)
    for source in sources:
        if not source.index_dir.is_dir():
            raise ValueError(
                f"index directory {source.index_dir} (pipeline {source.name}) is missing: build it with "
                "`semsearch run --dataset scifact`, or point --pipeline at another"
            )
    return tuple((source.name, source.index_dir.resolve()) for source in sources)


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server: which source tree (first on PYTHONPATH), which pipelines, which port, extra flags."""

    src: Path
    pipelines: tuple[tuple[str, Path], ...]  # (name, index dir)
    port: int
    python: str = "python"
    extra_args: tuple[str, ...] = ()  # e.g. ("--limit", "max_queue=64"); must be flags the tree at `src` knows
    log_path: Path | None = None  # the server's stdout and stderr (one file across restarts)
    startup_timeout_s: float = 300.0
    stop_grace_s: float = 5.0  # after SIGTERM, before SIGKILL (a wedged server waits for its busy handlers)

    def __post_init__(self) -> None:
        if not self.pipelines:
            raise ValueError("no pipelines to serve: give at least one NAME=DIR")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port: give 1..65535")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """`semsearch serve` through `search.cli.app`, so the tree on PYTHONPATH is the one that runs (the console
        script would import whichever tree is installed)."""
        pipelines = [arg for name, path in self.pipelines for arg in ("--pipeline", f"{name}={path}")]
        return [
            self.python, "-c", "from search.cli import app; app()", "serve", *pipelines,
            "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args,
        ]  # fmt: skip


class ServerProcess:
    """One running server (restartable). Use as a context manager: it is killed on exit whatever happened."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server is not running: call start() first")
        return self.process.pid

    def start(self) -> float:
        """Start the server and wait until /health answers 200; the seconds that took."""
        spec = self.spec
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(spec.src), os.environ.get("PYTHONPATH", "")])}
        if spec.log_path is not None and self._log is None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(spec.log_path, "wb")  # noqa: SIM115 - closed in close(); one file across restarts
        sink = self._log if self._log is not None else subprocess.DEVNULL
        started = time.perf_counter()
        # its own session: stop() signals the whole process group (uvicorn and any worker it spawns)
        self.process = subprocess.Popen(
            spec.command(), cwd=spec.src, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1
        while time.perf_counter() - started < spec.startup_timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {self.process.returncode} while starting; see {spec.log_path}"
                )
            if self.healthy(timeout_s=2.0):
                seconds = time.perf_counter() - started
                logger.info("server from %s up on port %d in %.1f s (pid %d)", spec.src, spec.port, seconds, self.pid)
                return seconds
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the server did not answer /health within {spec.startup_timeout_s:.0f} s; see {spec.log_path}"
        )

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """True when GET /health answers 200 within `timeout_s`."""
        try:
            return httpx.get(f"{self.spec.base_url}/health", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after the grace period (a wedged server ignores a graceful stop)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(self.spec.stop_grace_s)
            except subprocess.TimeoutExpired:
                logger.info("server pid %d ignored SIGTERM for %.0f s: killing it", process.pid, self.spec.stop_grace_s)
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def restart(self) -> float:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
