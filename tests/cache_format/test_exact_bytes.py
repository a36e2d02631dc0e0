"""The bytes of a tiny cache, exactly as docs/FORMAT.md specifies them."""
import hashlib
import json
import struct
import zlib

import numpy as np

import cache_format


IDENTITY_JSON = (b'{"codec":"none","dtype":"fp32","format_version":2,"hidden_size":2,'
                 b'"metadata":{"model":"m"},"scale_scheme":"none"}')


def test_tiny_fp32_cache_bytes(tmp_path):
    hidden = np.array([[1.0, -2.0], [0.5, 0.25]], np.float32)
    with cache_format.create(tmp_path, hidden_size=2, dtype="fp32", codec="none",
                             metadata={"model": "m"}) as w:
        w.add("ab", [7, 300], hidden)
    text = (tmp_path / "manifest.json").read_text()
    manifest = json.loads(text)
    cache_id = manifest["cache_id"]
    assert len(cache_id) == 32 and int(cache_id, 16) >= 0  # 16 random bytes, in hex
    # The owner block: writer id, sha256 of the identity fields' canonical JSON, name.
    owner = (bytes.fromhex(cache_id) + hashlib.sha256(IDENTITY_JSON).digest()
             + b"shard-00000".ljust(96, b"\0"))

    data = (tmp_path / "shard-00000.shard").read_bytes()
    payload = struct.pack("<2I", 7, 300) + hidden.astype("<f4").tobytes()
    assert data == b"ERCSHD02" + struct.pack("<II", 2, 0) + owner + payload

    index = (tmp_path / "shard-00000.index").read_bytes()
    entry = struct.pack("<QIIIHHIIII", 160, 24, 24, 2, 0, 0, zlib.crc32(payload), 0, 2, 0)
    covered = owner + entry + b"ab"
    header = b"ERCIDX02" + struct.pack("<IIIBBHIQI", 2, 1, 2, 0, 0, 0, 0, 184,
                                       zlib.crc32(covered))
    assert index == header + covered

    shard_entry = {"name": "shard-00000", "num_records": 1, "num_tokens": 2, "data_bytes": 184,
                   "writer_id": cache_id}
    body = {"cache_id": cache_id, "codec": "none", "dtype": "fp32", "format_version": 2,
            "hidden_size": 2, "metadata": {"model": "m"}, "num_examples": 1, "num_tokens": 2,
            "scale_scheme": "none", "shards": [shard_entry]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")
    assert manifest == dict(body, manifest_sha256=hashlib.sha256(canonical).hexdigest())
    assert text == json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    assert (tmp_path / "manifest.json.lock").exists()  # the writer's lock file stays


def test_tiny_int8_record_layout(tmp_path):
    hidden = np.array([[2.0, -1.0], [0.0, 4.0]], np.float32)
    with cache_format.create(tmp_path, hidden_size=2, dtype="int8", codec="none") as w:
        w.add("k", [1, 2], hidden, offsets=[[0, 1], [2, 5]])
    index = (tmp_path / "shard-00000.index").read_bytes()
    smoothing = np.frombuffer(index[184:192], "<f4")
    np.testing.assert_array_equal(smoothing, [2.0, 4.0])  # per-channel absmax
    data = (tmp_path / "shard-00000.shard").read_bytes()
    ids, scales = np.frombuffer(data[160:168], "<u4"), np.frombuffer(data[168:176], "<f4")
    q, spans = np.frombuffer(data[176:180], "i1"), np.frombuffer(data[180:196], "<i4")
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_allclose(scales, [1 / 127, 1 / 127])
    # smoothed: [[1, -0.25], [0, 1]]; scale 1/127 per token; -0.25 * 127 = -31.75 -> -32
    np.testing.assert_array_equal(q, [127, -32, 0, 127])
    np.testing.assert_array_equal(spans, [0, 1, 2, 5])
    flags = struct.unpack("<H", index[192 + 20:192 + 22])[0]
    assert flags == 2  # has offsets, stored raw
