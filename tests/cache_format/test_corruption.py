"""Damage is detected and named: wrong data is never returned."""
import json

import numpy as np
import pytest

import cache_format
from cache_format import CacheFormatError
from cache_format.manifest import read_manifest, write_manifest


def _write(path, dtype="fp16", codec="lz4", n=6):
    rng = np.random.default_rng(0)
    with cache_format.create(path, hidden_size=16, dtype=dtype, codec=codec) as w:
        for i in range(n):
            w.add(f"k{i}", np.arange(5), rng.standard_normal((5, 16)).astype(np.float32))
    return path


def _shard(path, suffix=".shard"):
    return next(p for p in path.iterdir() if p.name.endswith(suffix))


@pytest.mark.parametrize("dtype,codec", [("fp32", "none"), ("fp16", "lz4"), ("int8", "zstd")],
                         ids=["fp32-none", "fp16-lz4", "int8-zstd"])
def test_flipped_byte_in_a_record_names_shard_and_key(tmp_path, dtype, codec):
    _write(tmp_path, dtype, codec)
    r = cache_format.open(tmp_path)
    shard = _shard(tmp_path)
    start = r._shards[0].offsets[3]  # record 3 = key k3
    del r
    data = bytearray(shard.read_bytes())
    data[start + 10] ^= 0x40
    shard.write_bytes(bytes(data))
    r = cache_format.open(tmp_path)
    np.testing.assert_array_equal(r.token_ids("k2"), np.arange(5))  # other records still read
    with pytest.raises(CacheFormatError) as err:
        r.get("k3")
    assert str(shard) in str(err.value) and "key 'k3'" in str(err.value) and "crc32" in str(err.value)
    with pytest.raises(CacheFormatError, match="k3"):
        r.verify()


def test_truncated_shard_is_refused_at_open(tmp_path):
    _write(tmp_path)
    shard = _shard(tmp_path)
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(CacheFormatError, match=r"\.shard: shard is \d+ bytes, its index says \d+: the file is truncated"):
        cache_format.open(tmp_path)


def test_flipped_byte_in_index_is_refused(tmp_path):
    _write(tmp_path)
    index = _shard(tmp_path, ".index")
    data = bytearray(index.read_bytes())
    data[-3] ^= 1
    index.write_bytes(bytes(data))
    with pytest.raises(CacheFormatError, match=r"\.index: index fails its crc32 check"):
        cache_format.open(tmp_path)


@pytest.mark.parametrize("suffix,message", [
    (".shard", "shard file missing"), (".index", "index file missing"),
    ("manifest.json", "no manifest.json: not a cache"),
], ids=["shard", "index", "manifest"])
def test_missing_file_is_named(tmp_path, suffix, message):
    _write(tmp_path)
    _shard(tmp_path, suffix).unlink()
    with pytest.raises(CacheFormatError, match=message):
        cache_format.open(tmp_path)


def test_damaged_manifest_json(tmp_path):
    _write(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheFormatError, match="manifest.json: manifest is not valid JSON"):
        cache_format.open(tmp_path)


def _restamp(path, edit):
    """Edit manifest.json and write it back with a valid checksum, as a forger would."""
    m = read_manifest(path / "manifest.json")
    edit(m)
    write_manifest(path / "manifest.json", m)


def test_edited_manifest_fails_its_checksum(tmp_path):
    _write(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["num_tokens"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheFormatError, match="manifest.json: manifest fails its "
                                               "manifest_sha256 check"):
        cache_format.open(tmp_path)


def test_manifest_disagreeing_with_index(tmp_path):
    def edit(m):
        m["shards"][0]["num_records"] += 1
        m["num_examples"] += 1

    _write(tmp_path)
    _restamp(tmp_path, edit)
    with pytest.raises(CacheFormatError, match="index num_records is 6, the manifest says 7"):
        cache_format.open(tmp_path)


def test_future_format_version_is_refused(tmp_path):
    _write(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheFormatError, match="format_version 99 is not supported"):
        cache_format.open(tmp_path)


def test_not_a_folder(tmp_path):
    with pytest.raises(CacheFormatError, match="no such cache folder"):
        cache_format.open(tmp_path / "missing")


def test_version_1_cache_is_refused_with_a_way_forward(tmp_path):
    _write(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    m["format_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheFormatError, match=r"manifest.json: cache format_version 1 is no "
                                               r"longer read .*; delete .* and build it again"):
        cache_format.open(tmp_path)
