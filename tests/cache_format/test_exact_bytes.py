"""The bytes of a tiny cache, exactly as docs/FORMAT.md specifies them."""
import json
import struct
import zlib

import numpy as np

import cache_format


def test_tiny_fp32_cache_bytes(tmp_path):
    hidden = np.array([[1.0, -2.0], [0.5, 0.25]], np.float32)
    with cache_format.create(tmp_path, hidden_size=2, dtype="fp32", codec="none",
                             metadata={"model": "m"}) as w:
        w.add("ab", [7, 300], hidden)
    data = (tmp_path / "shard-00000.shard").read_bytes()
    payload = struct.pack("<2I", 7, 300) + hidden.astype("<f4").tobytes()
    assert data == b"ERCSHD01" + bytes(8) + payload

    index = (tmp_path / "shard-00000.index").read_bytes()
    entry = struct.pack("<QIIIHHIIII", 16, 24, 24, 2, 0, 0, zlib.crc32(payload), 0, 2, 0)
    body = entry + b"ab"
    header = b"ERCIDX01" + struct.pack("<IIIBBHIQI", 1, 1, 2, 0, 0, 0, 0, 40, zlib.crc32(body))
    assert index == header + body

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["shards"] == [{"name": "shard-00000", "num_records": 1, "num_tokens": 2,
                                   "data_bytes": 40}]


def test_tiny_int8_record_layout(tmp_path):
    hidden = np.array([[2.0, -1.0], [0.0, 4.0]], np.float32)
    with cache_format.create(tmp_path, hidden_size=2, dtype="int8", codec="none") as w:
        w.add("k", [1, 2], hidden, offsets=[[0, 1], [2, 5]])
    index = (tmp_path / "shard-00000.index").read_bytes()
    smoothing = np.frombuffer(index[40:48], "<f4")
    np.testing.assert_array_equal(smoothing, [2.0, 4.0])  # per-channel absmax
    data = (tmp_path / "shard-00000.shard").read_bytes()
    ids, scales = np.frombuffer(data[16:24], "<u4"), np.frombuffer(data[24:32], "<f4")
    q, spans = np.frombuffer(data[32:36], "i1"), np.frombuffer(data[36:52], "<i4")
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_allclose(scales, [1 / 127, 1 / 127])
    # smoothed: [[1, -0.25], [0, 1]]; scale 1/127 per token; -0.25 * 127 = -31.75 -> -32
    np.testing.assert_array_equal(q, [127, -32, 0, 127])
    np.testing.assert_array_equal(spans, [0, 1, 2, 5])
    flags = struct.unpack("<H", index[48 + 20:48 + 22])[0]
    assert flags == 2  # has offsets, stored raw
