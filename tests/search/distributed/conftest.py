"""One local Ray instance for the whole package, started through `ray_session` like the CLI's.

It has 2 CPUs (two encoder actors of one thread each), no dashboard, and worker output kept out of the test log; Ray
keeps its files where it always does (`/tmp/ray/session_*`, its token in `~/.ray/auth_token`). The only environment
variable set is `RAY_USAGE_STATS_ENABLED=0` (no usage report is attempted), for the package's duration.

Without `ray` (`pip install -e '.[ray]'`) the tests that need the instance are skipped with that command, unless
`SEMSEARCH_REQUIRE_RAY=1`, which turns the skip into a failure so a CI that installs the extra cannot pass without
running them. Tests that need no Ray (error messages, regrouping, shards) run either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from search.distributed.engine import INSTALL_HINT, RaySpec, ray_session, require_ray

REQUIRE_ENV = "SEMSEARCH_REQUIRE_RAY"
TEST_CPUS = 2


@pytest.fixture(scope="package")
def ray_local() -> Iterator[Any]:
    """The `ray` module, with a local instance of 2 CPUs running for the package (shut down at its end)."""
    try:
        require_ray()
    except ImportError:
        message = f"ray is not installed: {INSTALL_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        with ray_session(RaySpec(workers=TEST_CPUS)) as ray:
            yield ray
