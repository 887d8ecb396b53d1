"""The CLI's shared rules: commands listed in a fixed order, expected errors as one line and exit status 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner, Result

from search.cli import app

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def test_errors_exit_2_with_a_message(tmp_path, beir_dir):
    cases = [
        (
            (
                "index",
                "--dataset",
                str(beir_dir),
                "--encoder",
                "fake:8",
                "--index",
                "LSH",
                "--out",
                str(tmp_path / "a"),
            ),
            "unsupported index factory 'LSH'",
        ),
        (
            ("index", "--dataset", str(beir_dir), "--encoder", "nope", "--out", str(tmp_path / "b")),
            "unknown model 'nope': use one of teacher, minilm",
        ),
        (
            ("index", "--dataset", str(tmp_path / "missing.jsonl"), "--encoder", "fake", "--out", str(tmp_path / "c")),
            "unknown dataset",
        ),
        (("search", "--index-dir", str(tmp_path / "none"), "query"), "does not exist"),
        (("eval", "--index-dir", str(tmp_path / "none")), "does not exist"),
        (("serve", "--index-dir", str(tmp_path / "none")), "does not exist"),
        (
            (
                "index",
                "--dataset",
                str(beir_dir),
                "--encoder",
                "fake",
                "--params",
                "nprobe",
                "--out",
                str(tmp_path / "d"),
            ),
            "bad search parameter 'nprobe'",
        ),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_help_lists_every_command_in_the_documented_order() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    commands = ["index", "search", "eval", "distill", "quantize", "run", "bench-compression", "bench", "bench-scale",
                "serve"]  # fmt: skip
    positions = [result.output.find(f"│ {name} ") for name in commands]
    assert -1 not in positions and positions == sorted(positions), result.output


def test_run_or_exit_turns_expected_errors_into_exit_2_and_lets_bugs_through() -> None:
    import typer

    from search.cli.base import USAGE_ERROR_EXIT, run_or_exit

    assert run_or_exit(lambda: 42) == 42

    def missing() -> None:
        raise KeyError("no pipeline 'x'")

    with pytest.raises(typer.Exit) as exited:
        run_or_exit(missing)
    assert exited.value.exit_code == USAGE_ERROR_EXIT == 2

    def bug() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):  # not an expected error: the traceback stays
        run_or_exit(bug)


def test_print_mapping_as_json_and_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from search.cli.base import print_mapping

    print_mapping("t", {"ndcg@10": 0.123456, "out": Path("x"), "n": 3}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"ndcg@10": 0.123456, "out": "x", "n": 3}
    print_mapping("t", {"ndcg@10": 0.123456, "n": 3}, as_json=False)
    table = capsys.readouterr().out
    assert "0.1235" in table and "0.123456" not in table and "ndcg@10" in table
