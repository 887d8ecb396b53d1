"""schemathesis with every check (schema conformance included) against the running server's /openapi.json."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

JSON_HEADER = "Content-Type: application/json"
FINAL_LINE = re.compile(r"(no issues found|\d+ (failures?|errors?))", re.IGNORECASE)


def schemathesis_command(base_url: str, max_examples: int, request_timeout_s: float) -> list[str]:
    """`schemathesis run` (4.x CLI): all checks, a fixed seed, at most `max_examples` cases per operation."""
    return [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json", "--checks", "all",
        "--max-examples", str(max_examples), "--seed", "1", "--header", JSON_HEADER,
        "--request-timeout", str(request_timeout_s), "--generation-database", "none", "--no-color",
    ]  # fmt: skip


def summarize_output(text: str) -> dict[str, Any]:
    """The lines of schemathesis's summary that say what was generated and what failed, and the failure count."""
    lines = [line.strip(" =") for line in text.splitlines() if line.strip()]
    summary = [line for line in lines if "generated" in line or FINAL_LINE.search(line)]
    last = summary[-1] if summary else ""
    failures = sum(int(n) for n in re.findall(r"(\d+) failures?\b", last)) if summary else None
    errors = sum(int(n) for n in re.findall(r"(\d+) errors?\b", last)) if summary else None
    return {"summary": summary[-3:], "failures": failures, "errors": errors}


def run_schemathesis(
    base_url: str, max_examples: int, timeout_s: float, out: Path | None = None, request_timeout_s: float = 35.0
) -> dict[str, Any]:
    """Run it in a scratch directory (it keeps a cache in its working directory); the whole output goes to
    `out/schemathesis.txt`. Status: passed, failed, timeout or skipped (not installed). `request_timeout_s` is over
    the server's own deadline (30 s by default), which bounds every request: a slow answer is the server's 504,
    never the client giving up."""
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        return {"status": "skipped", "why": "schemathesis is not installed: pip install -e '.[bench]'"}
    command = schemathesis_command(base_url, max_examples, request_timeout_s)
    with tempfile.TemporaryDirectory(prefix="schemathesis-") as scratch:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=scratch)
        except subprocess.TimeoutExpired as err:
            output = err.stdout if isinstance(err.stdout, str) else (err.stdout or b"").decode(errors="replace")
            result: dict[str, Any] = {"status": "timeout", "seconds": timeout_s}
        else:
            output = done.stdout + done.stderr
            result = {"status": "passed" if done.returncode == 0 else "failed", "exit": done.returncode}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "schemathesis.txt").write_text(output)
    return {**result, **summarize_output(output), "command": " ".join(command[1:])}
