"""The processor line every bench prints beside its figures."""

from __future__ import annotations

from pathlib import Path

from inference.host import this_host

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: another
flags\t\t: fpu
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd sve bf16
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""


def test_an_x86_host_is_named_by_family_and_model_with_its_vector_extensions(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(X86)
    host = this_host(tmp_path / "cpuinfo")
    assert host.processor == "AMD EPYC, x86 family 26 model 2"  # the first processor's block only
    assert host.features == ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")
    assert host.describe() == f"AMD EPYC, x86 family 26 model 2; {host.cpus} CPUs; avx2 avx512f avx512_vnni avx512_bf16"


def test_an_arm_host_is_named_by_its_core(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(ARM)
    host = this_host(tmp_path / "cpuinfo")
    assert host.processor.endswith("ARM implementer 0x41 part 0xd40")
    assert host.features == ("asimd", "sve", "bf16")


def test_without_cpuinfo_the_platform_names_the_processor(tmp_path: Path) -> None:
    host = this_host(tmp_path / "absent")
    assert host.processor and host.features == () and host.cpus >= 1
    assert "no vector extensions of note" in host.describe()
