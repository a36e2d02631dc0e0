"""python -m cache_format info|verify|merge DIR: inspect, check or merge a cache."""
from __future__ import annotations

import sys

from . import merge, open as open_cache
from .cli_errors import OneLineParser, run_cli
from .layout import DTYPES


def _info(args) -> None:
    r = open_cache(args.dir)
    m = r.manifest
    data_bytes = sum(s["data_bytes"] for s in m["shards"])
    tokens = max(m["num_tokens"], 1)
    print(f"cache        {r.root}")
    for key in ("format_version", "dtype", "codec", "scale_scheme", "hidden_size",
                "num_examples", "num_tokens"):
        print(f"{key:12s} {m.get(key)}")
    print(f"shards       {len(m['shards'])} ({data_bytes / 2**20:.1f} MiB)")
    print(f"bytes/token  {data_bytes / tokens:.1f} on disk "
          f"({data_bytes / tokens / m['hidden_size']:.3f} x hidden_size; fp32 would be "
          f"{DTYPES['fp32'][1].itemsize * m['hidden_size'] + 4})")
    for key in sorted(m.get("metadata", {})):
        print(f"{key:12s} {m['metadata'][key]}")


def _verify(args) -> None:
    n = open_cache(args.dir).verify()
    print(f"{args.dir}: {n} records, every checksum and size verified")


def _merge(args) -> None:
    m = merge(args.dir)
    print(f"{args.dir}: merged {len(m['shards'])} shards, {m['num_examples']} records")


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m cache_format",
                           description="Inspect, verify or merge a hidden-state cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in [("info", _info, "print the manifest and bytes per token"),
                             ("verify", _verify, "read every record and check its checksum"),
                             ("merge", _merge, "merge part manifests of parallel writers")]:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("dir", help="the cache folder")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
