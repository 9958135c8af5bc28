"""The benchmark's yardsticks: the encoder's FLOP count (against PyTorch's own counter) and the CPU
peak read from /proc/cpuinfo and cpufreq (on written-out cpuinfo texts of three CPU kinds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emonet_face.bench.flops import siglip_vision_flops
from emonet_face.bench.hardware import detect_cpu_peak, parse_cpuinfo

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "patch_size": 8, "image_size": 32}
SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
          "patch_size": 16, "image_size": 384}


@pytest.mark.parametrize("config", [TINY, SO400M], ids=["tiny", "so400m"])
def test_flops_match_pytorch_flop_counter(config):
    """The analytic count equals FlopCounterMode's on the same architecture (meta tensors: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import SiglipVisionConfig, SiglipVisionModel

    with torch.device("meta"):
        model = SiglipVisionModel(SiglipVisionConfig(**config, attn_implementation="sdpa")).eval()
        pixels = torch.zeros(2, 3, config["image_size"], config["image_size"])
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(pixel_values=pixels)
    assert siglip_vision_flops(config) * 2 == counter.get_total_flops()


def test_so400m_costs_about_half_a_teraflop_per_image():
    assert siglip_vision_flops(SO400M) == 518_936_076_288
    assert siglip_vision_flops({**SO400M, "vision_use_head": False}) < siglip_vision_flops(SO400M)


def _cpu(processor: int, core: int, flags: str, model: str, vendor: str = "GenuineIntel", family: int = 6) -> str:
    return (
        f"processor\t: {processor}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: {model}\n"
        f"cpu MHz\t\t: 2445.424\nphysical id\t: 0\ncore id\t\t: {core}\nflags\t\t: fpu sse2 {flags}\n"
    )


ZEN3 = "\n".join(_cpu(i, i, "avx fma avx2", "AMD EPYC", "AuthenticAMD", 25) for i in range(2))
SKYLAKE = "\n".join(_cpu(i, i // 2, "avx fma avx2 avx512f", "Xeon Skylake") for i in range(4))  # SMT pairs
SAPPHIRE = "\n".join(
    _cpu(i, i, "avx fma avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8", "Xeon SPR") for i in range(2)
)


@pytest.mark.parametrize(
    ("text", "kind", "cores", "per_cycle"),
    [
        (ZEN3, "AVX2", 2, {"float32": 32, "bfloat16": 32, "int8": 128}),
        (SKYLAKE, "AVX512", 2, {"float32": 64, "bfloat16": 64, "int8": 256}),
        (SAPPHIRE, "AMX", 2, {"float32": 64, "bfloat16": 1024, "int8": 2048}),
    ],
    ids=["avx2", "avx512", "amx"],
)
def test_cpu_peak_from_cpuinfo(tmp_path, text, kind, cores, per_cycle):
    (tmp_path / "cpuinfo").write_text(text)
    peak = detect_cpu_peak(tmp_path / "cpuinfo", tmp_path / "no-cpufreq")
    assert peak is not None
    assert (peak.kind, peak.cores, peak.per_cycle) == (kind, min(cores, peak.cores), per_cycle)
    assert peak.clock_source == "/proc/cpuinfo cpu MHz"
    assert peak.peak_gflops("float32") == pytest.approx(peak.cores * 2.445424 * per_cycle["float32"])


def test_physical_cores_count_smt_siblings_once_and_follow_affinity():
    assert parse_cpuinfo(SKYLAKE)[4] == 2
    assert parse_cpuinfo(SKYLAKE, allowed={0, 1})[4] == 1
    assert parse_cpuinfo(ZEN3, allowed={1})[4] == 1


def test_base_frequency_is_preferred_over_cpu_mhz(tmp_path):
    (tmp_path / "cpuinfo").write_text(ZEN3)
    cpufreq = tmp_path / "cpufreq"
    cpufreq.mkdir()
    (cpufreq / "cpuinfo_max_freq").write_text("3500000\n")
    (cpufreq / "base_frequency").write_text("2000000\n")
    peak = detect_cpu_peak(tmp_path / "cpuinfo", cpufreq)
    assert peak is not None and (peak.clock_ghz, peak.clock_source) == (2.0, "cpufreq base_frequency")
    (cpufreq / "base_frequency").unlink()
    peak = detect_cpu_peak(tmp_path / "cpuinfo", cpufreq)
    assert peak is not None and peak.clock_ghz == 3.5 and "max" in peak.clock_source


def test_unreadable_or_non_x86_cpuinfo_means_unknown(tmp_path: Path):
    assert detect_cpu_peak(tmp_path / "absent") is None
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd sve\n")
    assert detect_cpu_peak(tmp_path / "arm") is None
