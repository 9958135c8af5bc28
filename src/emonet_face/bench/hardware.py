"""The CPU's arithmetic peak, so that benchmark figures can be held against the hardware's limit.

How the peak is found (Linux on x86; elsewhere the CPU is "unknown" and no share of peak is printed):

* **Cores**: physical cores this process may run on: the distinct ``(physical id, core id)`` pairs of
  ``/proc/cpuinfo`` among the CPUs of ``os.sched_getaffinity`` (SMT siblings share one core's vector
  units, so they add nothing to the peak).
* **Clock**: ``/sys/devices/system/cpu/cpu0/cpufreq/base_frequency`` (the nominal base clock, Intel
  P-state) where it exists; else ``cpuinfo_max_freq`` of the same folder (may be a boost clock: the
  share of peak then reads low); else ``cpu MHz`` of ``/proc/cpuinfo`` (the current clock; inside a
  virtual machine usually the host's nominal clock). The source is named in :attr:`CpuPeak.clock_source`.
* **Operations per cycle and core**, from the ISA flags (two vector FMA units per core, as on Intel
  Xeon Gold/Platinum and AMD Zen 2-5; a FLOP is one add or one multiply, an FMA is 2):

  ====================================  =========  ===========================================
  ISA                                   fp32       notes
  ====================================  =========  ===========================================
  AVX-512 (Intel, AMD Zen 5)            64         2 x 16 lanes x 2
  AVX-512 (AMD Zen 4)                   32         512-bit ops run as two 256-bit halves
  AVX2 + FMA (Zen 2/3, Haswell and on)  32         2 x 8 lanes x 2
  AVX without FMA                       16         one 8-lane add + one 8-lane multiply
  ====================================  =========  ===========================================

  bfloat16: AMX tiles 1024 FLOP/cycle (TDPBF16PS: 16x16x32 multiply-adds per 16 cycles); AVX512_BF16
  twice the fp32 figure (VDPBF16PS: two bf16 products per fp32 lane); none otherwise (bf16 is then
  emulated in fp32, so its peak is the fp32 one). int8 counts a multiply-add of int8 values as 2 ops,
  like FLOPs: AMX 2048/cycle; VNNI (AVX512_VNNI, AVX_VNNI) 4x the fp32 figure (VPDPBUSD: four u8 x s8
  products per 32-bit lane); without VNNI the same 4x bound for VPMADDUBSW (an upper bound: the
  16-to-32-bit widening adds compete for the same pipes, and ONNX Runtime's reduced 7-bit range
  exists to avoid its saturation).

The peak is nominal: no library sustains it over a whole transformer (norms, softmax, GELU and memory
traffic are not FMAs), so 60-80 % is a good figure for float32 GEMM-bound work on few cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CpuPeak", "detect_cpu_peak", "parse_cpuinfo"]

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
SPEED_FLAGS = (
    "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)
"""The ``/proc/cpuinfo`` flags that decide the peak (printed beside every speed figure)."""


@dataclass(frozen=True)
class CpuPeak:
    """One CPU's nominal peak: ``cores`` physical cores at ``clock_ghz`` with ``per_cycle`` operations
    per cycle and core for each precision (``float32``, ``bfloat16``, ``int8``)."""

    model: str
    cores: int
    clock_ghz: float
    clock_source: str
    flags: tuple[str, ...]
    per_cycle: dict[str, int]
    assumptions: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The CPU kind of the performance tables: ``AMX``, ``AVX512_BF16``, ``AVX512``, ``AVX2`` or older."""
        for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2")):
            if flag in self.flags:
                return name
        return "AVX" if "avx" in self.flags else "SSE"

    def peak_gflops(self, precision: str = "float32") -> float:
        """Nominal peak in GFLOP/s (giga-ops/s for int8) over all cores."""
        return self.cores * self.clock_ghz * self.per_cycle.get(precision, self.per_cycle["float32"])

    def describe(self) -> str:
        """One line for a benchmark's header: model, cores, clock and its source, flags, peaks."""
        peaks = ", ".join(f"{p} {self.peak_gflops(p):.0f}" for p in self.per_cycle)
        flags = " ".join(self.flags) or "none of " + " ".join(SPEED_FLAGS)
        return (
            f"{self.model}: {self.cores} physical core(s) at {self.clock_ghz:.2f} GHz ({self.clock_source}); "
            f"flags: {flags}; kind {self.kind}; nominal peak GFLOP/s (int8: Gop/s): {peaks}"
        )


def _per_cycle(flags: set[str], vendor: str, family: int) -> tuple[dict[str, int], list[str]]:
    """Operations per cycle and core for each precision from the ISA flags (see the module docstring)."""
    notes = ["two vector FMA units per core (some Xeon Silver/Bronze have one: halve the peak there)"]
    if "avx512f" in flags:
        zen4 = vendor == "AuthenticAMD" and family == 25
        fp32 = 32 if zen4 else 64
        notes.append("AVX-512 on AMD Zen 4 counted at 256-bit throughput" if zen4 else "AVX-512: 2 x 16 fp32 lanes")
    elif "avx2" in flags and "fma" in flags:
        fp32 = 32
    else:
        fp32 = 16 if "avx" in flags else 8
    bf16 = 1024 if "amx_bf16" in flags else 2 * fp32 if "avx512_bf16" in flags else fp32
    if "amx_int8" in flags:
        int8 = 2048
    else:
        int8 = 4 * fp32
        if "avx512_vnni" not in flags and "avx_vnni" not in flags:
            notes.append("int8 without VNNI: VPMADDUBSW upper bound (4x fp32), rarely reached")
    if bf16 == fp32:
        notes.append("no native bf16: bfloat16 runs at the float32 peak at best (emulated)")
    return {"float32": fp32, "bfloat16": bf16, "int8": int8}, notes


def parse_cpuinfo(text: str, allowed: set[int] | None = None) -> tuple[str, str, int, set[str], int, float | None]:
    """``/proc/cpuinfo`` → (model name, vendor, CPU family, flags, physical cores among ``allowed``
    logical CPUs (all when ``None``), ``cpu MHz`` of the first CPU or ``None``)."""
    cores: set[tuple[str, str]] = set()
    model, vendor, family, mhz = "unknown CPU", "", 0, None
    flags: set[str] = set()
    for block in text.strip().split("\n\n"):
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}
        if "processor" not in fields:
            continue
        if allowed is not None and int(fields["processor"]) not in allowed:
            continue
        cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
        if not flags:
            model, vendor = fields.get("model name", model), fields.get("vendor_id", "")
            family = int(fields.get("cpu family", "0") or 0)
            flags = set(fields.get("flags", "").split())
            mhz = float(fields["cpu MHz"]) if fields.get("cpu MHz") else None
    return model, vendor, family, flags, len(cores), mhz


def _clock(cpuinfo_mhz: float | None, cpufreq: Path) -> tuple[float, str]:
    """(GHz, where it came from): base frequency, else the cpufreq maximum, else ``cpu MHz``."""
    for name, label in (("base_frequency", "cpufreq base_frequency"), ("cpuinfo_max_freq", "cpufreq max (may be boost)")):
        path = cpufreq / name
        if path.is_file():
            return int(path.read_text().split()[0]) / 1e6, label
    if cpuinfo_mhz:
        return cpuinfo_mhz / 1000, "/proc/cpuinfo cpu MHz"
    return 0.0, "unknown clock"


def detect_cpu_peak(cpuinfo: Path = Path("/proc/cpuinfo"), cpufreq: Path = CPUFREQ) -> CpuPeak | None:
    """This machine's :class:`CpuPeak`, or ``None`` where ``/proc/cpuinfo`` cannot be read (not Linux) or
    lists no x86 flags (ARM and others: not described here)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    model, vendor, family, flags, cores, mhz = parse_cpuinfo(text, allowed)
    if not flags:  # not an x86 CPU (ARM lists "Features"): its vector units are not described here
        return None
    clock, source = _clock(mhz, cpufreq)
    per_cycle, notes = _per_cycle(flags, vendor, family)
    shown = tuple(f for f in SPEED_FLAGS if f in flags)
    return CpuPeak(model, cores or os.cpu_count() or 1, clock, source, shown, per_cycle, notes)
