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
    assert -1 not in positions, result.output
    assert positions == sorted(positions), result.output


def test_run_or_exit_turns_domain_errors_into_exit_2_and_lets_bugs_through() -> None:
    import typer

    from search.cli.base import USAGE_ERROR_EXIT, run_or_exit
    from search.data.records import DatasetError
    from semsearch_common.errors import MissingDependencyError

    assert run_or_exit(lambda: 42) == 42
    for error in (ValueError("bad k"), DatasetError("no corpus"), FileNotFoundError(2, "gone", "x.jsonl"),
                  MissingDependencyError("pip install it")):  # fmt: skip

        def fails(error: Exception = error) -> None:
            raise error

        with pytest.raises(typer.Exit) as exited:
            run_or_exit(fails)
        assert exited.value.exit_code == USAGE_ERROR_EXIT == 2
    for bug in (KeyError("key"), ImportError("No module named 'x'"), RuntimeError("a bug"), TypeError("a bug")):

        def breaks(bug: Exception = bug) -> None:
            raise bug

        with pytest.raises(type(bug)):  # not a domain error: the traceback stays
            run_or_exit(breaks)


def test_an_unexpected_key_error_keeps_its_traceback(tmp_path, beir_dir, monkeypatch) -> None:
    import search.data.datasets as datasets

    def buggy(*args: object, **kwargs: object) -> None:
        raise KeyError("key")

    monkeypatch.setattr(datasets, "load_dataset", buggy)
    result = invoke("index", "--dataset", str(beir_dir), "--encoder", "fake:8", "--out", str(tmp_path / "a"))
    assert isinstance(result.exception, KeyError)
    assert result.exit_code == 1
    assert "error:" not in result.output


def test_bad_user_input_is_one_line_and_exit_2(tmp_path, beir_dir, monkeypatch) -> None:
    import sys

    (tmp_path / "not-beir").mkdir()
    index = ("index", "--encoder", "fake:8", "--out", str(tmp_path / "out"))
    cases = [
        ((*index, "--dataset", str(tmp_path / "missing.jsonl")), "unknown dataset"),  # a bad file path
        ((*index, "--dataset", str(tmp_path / "not-beir")), "not-beir"),  # a folder that is no dataset
        ((*index, "--dataset", str(beir_dir), "--index", "IVF,PQ"), "unsupported index factory 'IVF,PQ'"),
        ((*index, "--dataset", str(beir_dir), "--engine", "ray"), "pip install -e '.[ray]'"),  # a missing extra
    ]
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as without the extra
    for args, message in cases:
        result = invoke(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2, (args, result.output)
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: "), (args, result.stderr)
        assert message in lines[0], (args, result.stderr)
    assert not (tmp_path / "out").exists()


def test_a_choice_outside_its_values_is_a_usage_error_naming_them(tmp_path, beir_dir, usage_error) -> None:
    args = ("index", "--dataset", str(beir_dir), "--encoder", "fake:8", "--out", str(tmp_path / "a"))
    usage_error(invoke(*args, "--engine", "spark"), "--engine", "'spark' is not one of 'local', 'ray'")
    usage_error(invoke(*args, "--on-bad-record", "ignore"), "'ignore' is not one of 'fail', 'skip'")
    usage_error(invoke(*args, "--precision", "fp16"), "'fp16' is not one of 'auto', 'fp32', 'bf16'")
    usage_error(invoke(*args, "--threads", "0"), "--threads", "greater than or equal to 1")
    assert not (tmp_path / "a").exists()


def test_help_lists_the_choices_and_shows_every_bracket() -> None:
    """Rich reads `[word...]` in help text as markup and drops it; every bracket written in a help must show."""
    import re

    import typer

    index_help = runner.invoke(app, ["index", "--help"], env={"COLUMNS": "300"})
    assert "pip install -e '.[ray]'" in index_help.output
    assert "<local|ray>" in index_help.output
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        shown = " ".join(runner.invoke(app, [name, "--help"], env={"COLUMNS": "300"}).output.replace("│", " ").split())
        for param in command.params:
            written = (getattr(param, "help", None) or "").replace("\\[", "[")
            for bracket in re.findall(r"\[[^\]]*\]", written):
                assert " ".join(bracket.split()) in shown, (name, param.name, bracket)


def test_bench_commands_write_under_runs_by_default() -> None:
    """The committed figures in benchmarks/ change only when a command is given that folder with --out."""
    from pathlib import Path

    import typer

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("bench", "bench-compression", "bench-scale", "bench-students"):
        out = next(param for param in commands[name].params if param.name == "out")
        assert Path(out.default).parts[0] == "runs", name
        assert "benchmarks" not in Path(out.default).parts, name


def test_every_threads_option_defaults_to_every_core() -> None:
    import typer

    from search.cli.base import THREADS_DEFAULT

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    options = {name: param for name, command in commands.items() for param in command.params if param.name == "threads"}
    # none of these encodes or searches
    assert set(options) == set(commands) - {"prune-vocab", "migrate-index", "delete", "show"}
    for name, param in options.items():
        assert param.default is None, name
        assert THREADS_DEFAULT in param.help, name


def test_print_mapping_as_json_and_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from search.cli.base import print_mapping

    print_mapping("t", {"ndcg@10": 0.123456, "out": Path("x"), "n": 3}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"ndcg@10": 0.123456, "out": "x", "n": 3}
    print_mapping("t", {"ndcg@10": 0.123456, "n": 3}, as_json=False)
    table = capsys.readouterr().out
    assert "0.1235" in table
    assert "0.123456" not in table
    assert "ndcg@10" in table
