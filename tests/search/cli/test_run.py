"""`semsearch run`: its options become the main job's spec (the job itself is tested in tests/search/jobs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compression.distill import DistillConfig
from search.cli import app
from search.jobs.main_job import MainJobSpec
from semsearch_common.threads import available_cores


@pytest.fixture
def captured_spec(monkeypatch: pytest.MonkeyPatch) -> list[MainJobSpec]:
    """Replace the job by one that records its spec and stops with an expected error (exit 2)."""
    import search.cli.run as run_command

    specs: list[MainJobSpec] = []

    def fake_run(spec: MainJobSpec, show_progress: bool = True) -> None:
        specs.append(spec)
        raise ValueError("stopped before the job")

    monkeypatch.setattr(run_command, "run_main_job", fake_run)
    return specs


def test_run_defaults_are_the_main_job_defaults(captured_spec: list[MainJobSpec]) -> None:
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "stopped before the job" in result.output
    spec = captured_spec[0]
    assert spec == MainJobSpec()
    assert spec.runs_dir == Path("runs")
    assert spec.threads == available_cores()
    assert spec.recipe == DistillConfig()
    assert not spec.quick
    assert spec.compressed_factory == "auto"  # chosen per corpus by indexes.choice


def test_run_overrides_apply_to_full_and_quick_runs(captured_spec: list[MainJobSpec], tmp_path: Path) -> None:
    args = ["run", "--quick", "--compressed-index", "IVF4,PQ8", "--distill-texts", "50", "--quantization", "static",
            "--runs-dir", str(tmp_path), "--threads", "1", "--dataset", "somewhere"]  # fmt: skip
    CliRunner().invoke(app, args)
    spec = captured_spec[0]
    assert spec.quick
    assert spec.compressed_index == spec.quick_compressed_index == spec.compressed_factory == "IVF4,PQ8"
    assert spec.distill_texts == spec.quick_distill_texts == spec.texts_for_training == 50
    assert (spec.quantization, spec.runs_dir, spec.threads, spec.dataset) == ("static", tmp_path, 1, "somewhere")


def test_run_refuses_a_bad_choice_with_a_usage_error(captured_spec: list[MainJobSpec], usage_error) -> None:
    usage_error(CliRunner().invoke(app, ["run", "--quantization", "int4"]), "'int4' is not one of 'dynamic', 'static'")
    usage_error(CliRunner().invoke(app, ["run", "--teacher-precision", "fp8"]), "'fp8' is not one of 'auto'")
    assert not captured_spec
