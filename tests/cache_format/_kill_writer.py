"""Helper process for the SIGKILL test: writes records forever, committing every 5."""
import sys

import numpy as np

import cache_format


def records(n):
    rng = np.random.default_rng(42)
    for i in range(n):
        t = 3 + i % 11
        yield f"r{i:04d}", rng.integers(0, 1000, t), rng.standard_normal((t, 24)).astype(np.float32)


def main(path, n, kill_after):
    with cache_format.create(path, hidden_size=24, dtype="int8", metadata={"model": "t"},
                             append=True, calibration_tokens=20) as w:
        for i, (key, ids, hidden) in enumerate(records(n)):
            if key in w:
                continue  # committed by an earlier, interrupted run
            w.add(key, ids, hidden)
            if i % 5 == 4:
                w.commit()
            if i == kill_after:
                print("ready", flush=True)
                sys.stdin.read()  # wait to be killed mid-shard


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
