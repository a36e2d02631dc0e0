"""What this CPU can do for the lower stack's arithmetic: which bf16 instruction sets it
reports, and the one-line warning a bf16 build prints on a CPU that has none.

Without avx512_bf16 or AMX, PyTorch runs bfloat16 matmuls through conversions to fp32: on a
2-core AMD EPYC with AVX2 only, bench.precision measured bf16 at 0.17x the fp32 speed
(docs/results/precision-quiet-noavx512-2026-12-02.json).
"""
from __future__ import annotations

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def _cpu_flags(cpuinfo: str) -> list[str] | None:
    """The flags line of /proc/cpuinfo, or None where there is no such file or line."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].split() for line in f
                         if line.startswith("flags")), None)
    except OSError:
        return None


def _first_field(cpuinfo: str, name: str) -> str | None:
    """The value of the first `name :` line of /proc/cpuinfo (one per core; the first will do)."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.split(":", 1)[0].strip() == name), None)
    except OSError:
        return None


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """Which CPU this is, for result records: model name, family and model (a KVM guest often
    names every Xeon alike, "Intel(R) Xeon(R) Processor"; family and model tell them apart) and
    the bf16 flags. Fields the file does not give are None."""
    return {"model_name": _first_field(cpuinfo, "model name"),
            "family": _first_field(cpuinfo, "cpu family"),
            "model": _first_field(cpuinfo, "model"),
            "bf16_flags": cpu_bf16_flags(cpuinfo)}


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """Which of avx512_bf16 / amx_bf16 / amx_tile the CPU reports (empty when none, or no file)."""
    flags = _cpu_flags(cpuinfo) or []
    return [f for f in BF16_FLAGS if f in flags]


def bf16_warning(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The warning for a bf16 build on this CPU, or None where bf16 has hardware support.

    Only a CPU that lists its flags and lists none of BF16_FLAGS is warned about: with no
    /proc/cpuinfo (macOS, Windows) nothing is known, so nothing is claimed.
    """
    flags = _cpu_flags(cpuinfo)
    if flags is None or any(f in flags for f in BF16_FLAGS):
        return None
    return ("warning: this CPU reports neither avx512_bf16 nor AMX, so bf16 runs emulated and "
            "is slower than the fp32 default (0.17x measured on an AVX2-only AMD EPYC); "
            "python -m bench.precision measures it here")
