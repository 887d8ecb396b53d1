"""`StaticConfig` validation: bad values are refused with the allowed ones listed."""

from __future__ import annotations

import pytest

from compression.static import StaticConfig


def test_defaults_round_trip():
    config = StaticConfig()
    assert config.epochs == 8
    assert config.max_seq_length == 32
    assert config.token_init == "teacher-tokens"
    assert StaticConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": "kl"}, "mse, mse\\+rank"),
        ({"token_init": "random"}, "teacher-tokens, teacher-embeddings"),
        ({"optimizer": "sgd"}, "sparse-adam, adamw"),
        ({"init_precision": "fp16"}, "auto, fp32, bf16"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_seq_length": 2}, "max_seq_length"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"temperature": -1.0}, "temperature"),
        ({"rank_weight": -0.5}, "rank_weight"),
    ],
)
def test_bad_values_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        StaticConfig(**change)


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown static config keys"):
        StaticConfig.from_dict({"epochs": 1, "lr": 0.1})
