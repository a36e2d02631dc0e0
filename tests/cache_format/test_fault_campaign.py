"""The fault campaign: damage a real cache one fault at a time; every outcome must be a
CacheFormatError or data bit-identical to the pristine decode (manifest view included).

- bit flips at random (fixed seed) in every file of the cache, manifest included;
- every file, and every shard+index pair, replaced by the same-named file of a sibling cache
  (same keys and lengths, other metadata and states), or by the other shard's file;
- manifest edits that stay valid JSON, plain (the checksum must catch them) and re-stamped with
  a valid checksum, as a forger would (the identity and layout checks must catch them).

`make test` runs FAULT_FLIPS flips per dtype (default 120); `make fuzz` runs 2,500.
"""
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

import cache_format
from cache_format import CacheFormatError
from cache_format.manifest import read_manifest, write_manifest

FLIPS = int(os.environ.get("FAULT_FLIPS", "120"))
SEED = 9
H = 16


def _build(path: Path, dtype: str, *, layer: int, seed: int) -> Path:
    """Two shards (shard_bytes is at its minimum), records with and without offsets."""
    rng = np.random.default_rng(seed)
    lengths = np.random.default_rng(0).integers(20, 90, 70)  # the same in every sibling
    with cache_format.create(path, hidden_size=H, dtype=dtype, codec="lz4",
                             metadata={"model": "m", "layer": layer}, shard_bytes=2**16,
                             calibration_tokens=64) as w:
        for i, t in enumerate(lengths):
            hidden = rng.standard_normal((t, H)).astype(np.float32)
            if i % 3 == 0:
                hidden[:, :4] = 0.5  # compressible, so lz4 stores some records compressed
            spans = np.stack([np.arange(t), np.arange(t) + 1], 1) if i % 2 else None
            w.add(f"k{i:02d}", np.arange(t) % 1000, hidden, offsets=spans)
    return path


def _decode(path: Path):
    r = cache_format.open(path)
    view = json.dumps(r.manifest, sort_keys=True)
    return view, [(k, r.token_ids(k).tobytes(), r.get(k).tobytes(),
                   None if r.offsets(k) is None else r.offsets(k).tobytes()) for k in r.keys()]


def _outcome(path: Path, pristine) -> str:
    """'error' (CacheFormatError), 'same' (bit-identical) or 'SILENT' (wrong data returned)."""
    try:
        got = _decode(path)
        cache_format.open(path).verify()
    except CacheFormatError:
        return "error"
    return "same" if got == pristine else "SILENT"


@pytest.fixture(scope="module", params=["int8", "fp16"])
def caches(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    main = _build(root / "main", request.param, layer=3, seed=1)
    sibling = _build(root / "sibling", request.param, layer=2, seed=2)
    assert len(cache_format.open(main)._shards) >= 2
    return main, sibling, _decode(main)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".lock"))


def _replace(path: Path, data: bytes) -> None:
    """New inode, so that a reader still mapping the old file is not disturbed."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_random_bit_flips_in_every_file(caches, tmp_path):
    main, _, pristine = caches
    work = tmp_path / "c"
    shutil.copytree(main, work)
    files = _files(work)
    originals = {p: p.read_bytes() for p in files}
    rng = random.Random(SEED)
    counts = {"error": 0, "same": 0, "SILENT": 0}
    silent = []
    for n in range(FLIPS):
        path = files[n % len(files)]  # every file gets its share
        data = bytearray(originals[path])
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
        _replace(path, bytes(data))
        result = _outcome(work, pristine)
        counts[result] += 1
        if result == "SILENT":
            silent.append(f"{path.name} bit {bit}")
        _replace(path, originals[path])
    print(f"{FLIPS} flips: {counts}")
    assert not silent, f"wrong data returned without an error: {silent[:5]}"
    assert counts["error"] > 0


def _swaps(main: Path, sibling: Path):
    """(description, {file name in main: bytes to put there})."""
    names = [p.name for p in _files(main)]
    for name in names:
        yield f"{name} from the sibling", {name: (sibling / name).read_bytes()}
    shards = sorted(n[:-len(".shard")] for n in names if n.endswith(".shard"))
    for stem in shards:
        yield f"{stem} pair from the sibling", {
            f"{stem}{suffix}": (sibling / f"{stem}{suffix}").read_bytes()
            for suffix in (".shard", ".index")}
    first, second = shards[:2]
    for suffix in (".shard", ".index"):
        yield f"{second}{suffix} over {first}", {
            f"{first}{suffix}": (main / f"{second}{suffix}").read_bytes()}
    yield f"{second} pair over {first}", {
        f"{first}{suffix}": (main / f"{second}{suffix}").read_bytes()
        for suffix in (".shard", ".index")}


def test_files_copied_from_a_sibling_or_another_shard_are_refused(caches, tmp_path):
    main, sibling, pristine = caches
    for what, replacement in _swaps(main, sibling):
        work = tmp_path / what.replace(" ", "_")
        shutil.copytree(main, work)
        for name, data in replacement.items():
            _replace(work / name, data)
        assert _outcome(work, pristine) == "error", what


def _set_layer(m):
    m["metadata"]["layer"] = 2


def _rename_shard(m):
    m["shards"][0]["name"] = "shard-00007"


def _other_writer(m):
    m["shards"][1]["writer_id"] = "0" * 32


def _swap_shards(m):
    m["shards"].reverse()


def _drop_shard(m):
    dropped = m["shards"].pop()
    m["num_examples"] -= dropped["num_records"]
    m["num_tokens"] -= dropped["num_tokens"]


def _codec(m):
    m["codec"] = "zstd"


def _hidden(m):
    m["hidden_size"] = 8


def _add_metadata(m):
    m["metadata"]["stride"] = 0


EDITS = {  # name: edit of the manifest dict
    "layer": _set_layer, "shard-name": _rename_shard, "writer-id": _other_writer,
    "shard-order": _swap_shards, "drop-shard": _drop_shard, "codec": _codec,
    "hidden-size": _hidden, "add-metadata": _add_metadata,
    "num-tokens": lambda m: m.update(num_tokens=m["num_tokens"] + 1),
    "top-level-copy": lambda m: m.update(layer=2),
    "version": lambda m: m.update(format_version=1),
    "dtype": lambda m: m.update(dtype="fp32" if m["dtype"] != "fp32" else "fp16"),
    "entry-bytes": lambda m: m["shards"][0].update(data_bytes=m["shards"][0]["data_bytes"] + 8),
    "entry-type": lambda m: m["shards"][0].update(num_records=str(m["shards"][0]["num_records"])),
    "bool-hidden": lambda m: m.update(hidden_size=True),
    "not-a-list": lambda m: m.update(shards={}),
    "unknown-key": lambda m: m.update(extra=1),
    "missing-key": lambda m: m.pop("codec"),
}


# Re-stamped edits that describe a different but sound cache (fewer shards, another order) are
# not faults: a valid checksum makes the manifest the authority. Plain, they must fail.
SOUND_WHEN_RESTAMPED = {"shard-order", "drop-shard"}
EDIT_CASES = [pytest.param(edit, restamp, id=f"{name}-{'restamped' if restamp else 'plain'}")
              for name, edit in EDITS.items() for restamp in (False, True)
              if not (restamp and name in SOUND_WHEN_RESTAMPED)]


@pytest.mark.parametrize("edit,restamp", EDIT_CASES)
def test_manifest_edits_that_stay_valid_json(caches, tmp_path, edit, restamp):
    main, _, pristine = caches
    work = tmp_path / "c"
    shutil.copytree(main, work)
    manifest = work / "manifest.json"
    if restamp:
        m = read_manifest(manifest)
        edit(m)
        write_manifest(manifest, m)
    else:
        m = json.loads(manifest.read_text())
        edit(m)
        manifest.write_text(json.dumps(m, indent=1, sort_keys=True))
    assert _outcome(work, pristine) == "error"


@pytest.mark.parametrize("text,message", [
    (b'{"format_version": 2, "x": "\xff"}', "manifest is not UTF-8"),
    (b"[1, 2]", "manifest is a JSON list, not an object"),
    (b"3", "manifest is a JSON int, not an object"),
    (b"{", "manifest is not valid JSON"),
    (b'{"format_version": 2, "format_version": 2}', "duplicate key 'format_version'"),
    (b'{"format_version": NaN}', "NaN is not allowed"),
    (b'{"format_version": "2"}', "format_version '2' is not supported"),
    (b'{"format_version": 2}', "fails its manifest_sha256 check"),
    (b"", "manifest is not valid JSON"),
], ids=["non-utf8", "list", "int", "truncated", "duplicate", "nan", "str-version",
        "no-checksum", "empty"])
def test_damaged_manifest_is_one_error_naming_the_file(caches, tmp_path, text, message):
    main, _, _ = caches
    work = tmp_path / "c"
    shutil.copytree(main, work)
    (work / "manifest.json").write_bytes(text)
    with pytest.raises(CacheFormatError) as err:
        cache_format.open(work)
    assert str(work / "manifest.json") in str(err.value) and message in str(err.value)
