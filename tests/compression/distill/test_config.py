"""`DistillConfig` (its defaults are the shipped recipe), its validation and `parse_student`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression.distill import DistillConfig, parse_student


def test_the_default_config_is_the_shipped_recipe() -> None:
    recipe = DistillConfig()
    assert (recipe.student, recipe.teacher, recipe.loss, recipe.projection) == (
        "teacher-layers:0,11",
        "teacher",
        "mse+rank",
        "auto",
    )
    assert (recipe.learning_rate, recipe.precision) == (1e-4, "auto")
    assert (recipe.epochs, recipe.batch_size, recipe.max_seq_length) == (2, 32, 32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "cosine"}, "mse, kl, mse\\+kl"),
        ({"student": "bert-tiny"}, "minilm, teacher-layers:N"),
        ({"student": "teacher-layers:0"}, "teacher-layers:N"),
        ({"student": "teacher-layers:x"}, "teacher-layers:N"),
        ({"student": "teacher-layers:3,1"}, "increasing order"),
        ({"projection": "sometimes"}, "auto, never"),
        ({"precision": "fp16"}, "auto, fp32, bf16"),
        ({"batching": "nearest"}, "random, neighbours"),
        ({"temperature": 0.0}, "temperature"),
        ({"batch_size": 1}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"max_texts": 1}, "max_texts"),
        ({"kl_weight": -1.0}, "kl_weight"),
    ],
)
def test_config_validation_lists_the_allowed_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistillConfig(**overrides)


def test_config_round_trips_through_a_dict() -> None:
    config = DistillConfig(student="teacher-layers:6", loss="mse+kl", kl_weight=0.3)
    assert DistillConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown distill config keys"):
        DistillConfig.from_dict({"lr": 1.0})


def test_parse_student_reads_every_form(tmp_path: Path) -> None:
    assert parse_student("minilm") == ("minilm", "minilm")
    assert parse_student("teacher-layers:6") == ("teacher-layers", 6)
    assert parse_student("teacher-layers:2,5,8,11") == ("teacher-layers", [2, 5, 8, 11])
    assert parse_student("minilm-layers:0,2,5") == ("minilm-layers", [0, 2, 5])
    assert parse_student("minilm-layers:3") == ("minilm-layers", 3)
    assert parse_student("teacher-layers:11,") == ("teacher-layers", [11])  # one layer by index, not a count
    for bad in ("minilm-layers:", "minilm-layers:2,1", "minilm-layers:0"):
        with pytest.raises(ValueError, match="minilm-layers"):
            parse_student(bad)
    assert parse_student(str(tmp_path)) == ("folder", str(tmp_path))
    with pytest.raises(ValueError, match="a local sentence-transformers folder"):
        parse_student(str(tmp_path / "missing"))
