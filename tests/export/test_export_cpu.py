"""export.cpu: the bf16 instruction-set probe and the warning a bf16 build gives on a CPU
without them."""
import pytest

from export.cpu import bf16_warning, cpu_bf16_flags, cpu_description


def _cpuinfo(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("flags, want", [
    ("fpu avx2 avx512f avx512_bf16", ["avx512_bf16"]),
    ("fpu avx2 amx_bf16 amx_tile avx512_bf16", ["avx512_bf16", "amx_bf16", "amx_tile"]),
    ("fpu avx2", []),
], ids=["zen4", "sapphire-rapids", "zen3"])
def test_cpu_bf16_flags(tmp_path, flags, want):
    assert cpu_bf16_flags(_cpuinfo(tmp_path, f"processor\t: 0\nflags\t\t: {flags}\n")) == want
    assert cpu_bf16_flags(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("text, warns", [
    ("processor\t: 0\nflags\t\t: fpu avx2 fma\n", True),
    ("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n", False),
    ("processor\t: 0\nFeatures\t: fp asimd bf16\n", False),  # no flags line: nothing known
], ids=["avx2-only", "avx512_bf16", "no-flags-line"])
def test_bf16_warning_only_where_the_cpu_lists_flags_and_none_for_bf16(tmp_path, text, warns):
    warning = bf16_warning(_cpuinfo(tmp_path, text))
    if warns:
        assert warning.startswith("warning: this CPU reports neither avx512_bf16 nor AMX")
        assert "\n" not in warning
    else:
        assert warning is None
    assert bf16_warning(str(tmp_path / "missing")) is None


def test_cpu_description_names_the_model_and_tells_kvm_xeons_apart(tmp_path):
    text = ("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 167\nmodel name\t: Intel(R) Xeon(R) "
            "Processor\nflags\t\t: fpu avx512_bf16\nprocessor\t: 1\nmodel\t\t: 999\n")
    assert cpu_description(_cpuinfo(tmp_path, text)) == {
        "model_name": "Intel(R) Xeon(R) Processor", "family": "6", "model": "167",
        "bf16_flags": ["avx512_bf16"]}
    assert cpu_description(str(tmp_path / "missing")) == {
        "model_name": None, "family": None, "model": None, "bf16_flags": []}
