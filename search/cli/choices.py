"""The command line's fixed choices as str Enums, each built from the tuple of allowed names its own module owns, so
`--help` lists them and typer refuses any other value with a usage error (exit status 2) that names them.

Commands pass `choice.value` on, so the layers below see the plain strings they define.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from compression.distill.config import BATCHING_MODES, CURRICULA, LOSS_NAMES, PROJECTION_MODES
from compression.encoders.onnx import QUANTIZATION_MODES
from compression.precision import PRECISION_NAMES
from indexes.vector_file import NO_VECTORS, VECTOR_DTYPES
from search.bench.scale.generators import GENERATORS, NOISE_MODES
from search.data.records import BAD_RECORD_POLICIES
from search.distributed.engine import ENGINES


def choice_enum(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A StrEnum whose members are `values`, each named as its value (`Loss("mse+kl").value == "mse+kl"`)."""
    return StrEnum(name, [(value, value) for value in values], module=__name__)


Engine = choice_enum("Engine", ENGINES)
BadRecordPolicy = choice_enum("BadRecordPolicy", BAD_RECORD_POLICIES)
Precision = choice_enum("Precision", PRECISION_NAMES)
QuantizationMode = choice_enum("QuantizationMode", QUANTIZATION_MODES)
Loss = choice_enum("Loss", LOSS_NAMES)
Projection = choice_enum("Projection", PROJECTION_MODES)
Batching = choice_enum("Batching", BATCHING_MODES)
Curriculum = choice_enum("Curriculum", CURRICULA)
Generator = choice_enum("Generator", GENERATORS)
NoiseMode = choice_enum("NoiseMode", NOISE_MODES)
VectorPrecision = choice_enum("VectorPrecision", (*VECTOR_DTYPES, NO_VECTORS))
