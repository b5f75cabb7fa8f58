"""What this box has to run jobs on: NVIDIA GPUs through NVML (nvidia-smi's CSV when the bindings are
missing), AMD GPUs through rocm-smi, else the CPU; each with its memory, the variables that pin a job
to it, and whether the toolchain's backend can use it."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from orchestrator import procs
from orchestrator.errors import UsageError
from orchestrator.execute.scheduler import Device, Inventory

SMI_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total,memory.free",
             "--format=csv,noheader,nounits"]
BACKEND_OF = {"cuda": "CUDA", "rocm": "ROCm", "vulkan": "Vulkan", "cpu": "CPU"}


@dataclass(frozen=True)
class Found:
    device: Device
    index: int
    source: str             # nvml | nvidia-smi | rocm-smi | proc
    usable: bool = True     # the toolchain has this device's backend

    def pin_env(self) -> dict[str, str]:
        """The variables that make a job see this device alone (as its device 0)."""
        d = self.device
        if d.kind == "cuda":
            return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": d.id}
        if d.kind == "rocm":
            return {"HIP_VISIBLE_DEVICES": str(self.index)}
        if d.kind == "vulkan":
            return {"GGML_VK_VISIBLE_DEVICES": str(self.index)}
        return {}


def find(backends: tuple[str, ...] = ("CPU",), only: str | None = None) -> list[Found]:
    """Every device of this box, GPUs first; `only` ("0,2" or UUID prefixes) keeps those GPUs."""
    gpus = _nvml() or _nvidia_smi() or _rocm_smi()
    found = [Found(g.device, g.index, g.source, usable=BACKEND_OF[g.device.kind] in backends
                   or (g.device.kind == "rocm" and "HIP" in backends)) for g in gpus]
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        keep = [f for f in found if str(f.index) in wanted or any(f.device.id.startswith(w) for w in wanted)]
        if not keep:
            raise UsageError(f"--devices {only}: no such device here ({describe(found) or 'no GPU'})")
        found = keep
    return found + [_host()]


def refresh(found: list[Found]) -> list[Found]:
    """The same devices with their free memory read again (the scheduler's guard against foreign use)."""
    gpus = any(f.device.kind != "cpu" for f in found)  # none: no vendor tool is asked again, each job end
    now = {f.device.id: f.device for f in (_nvml() or _nvidia_smi() or _rocm_smi())} if gpus else {}
    now["cpu"] = _host().device
    return [Found(now.get(f.device.id, f.device), f.index, f.source, f.usable) for f in found]


def inventory(found: list[Found], threads: int | None = None) -> Inventory:
    """What the scheduler places jobs on: the usable GPUs, else the CPU."""
    gpus = tuple(f.device for f in found if f.usable and f.device.kind != "cpu")
    host = next(f.device for f in found if f.device.kind == "cpu")
    return Inventory(devices=gpus or (host,), host_threads=threads or os.cpu_count() or 1)


def table(found: list[Found], backends) -> list[list[str]]:
    rows = []
    for f in found:
        d = f.device
        use = "yes" if f.usable else f"no: this toolchain has {', '.join(backends)}, not {BACKEND_OF[d.kind]}"
        rows.append([str(f.index) if d.kind != "cpu" else "-", d.kind, d.name, d.id, f"{d.total / 2**30:.1f}",
                     f"{d.free / 2**30:.1f}", use, f.source])
    return rows


def describe(found: list[Found]) -> str:
    return ", ".join(f"{f.index}: {f.device.name}" for f in found if f.device.kind != "cpu")


def _nvml() -> list[Found]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver (NVMLError_LibraryNotFound) or no device
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            uuid, name = pynvml.nvmlDeviceGetUUID(h), pynvml.nvmlDeviceGetName(h)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            name = name.decode() if isinstance(name, bytes) else name
            out.append(Found(Device(uuid, name, int(mem.total), int(mem.free), "cuda"), i, "nvml"))
        return out
    finally:
        pynvml.nvmlShutdown()


def _nvidia_smi() -> list[Found]:
    if not shutil.which("nvidia-smi"):
        return []
    res = procs.run(SMI_QUERY, timeout=30)
    return parse_nvidia_smi(res.stdout) if res.rc == 0 else []


def parse_nvidia_smi(text: str) -> list[Found]:
    """`index, uuid, name, memory.total, memory.free` in MiB, one GPU a line."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit():
            continue
        i, uuid, name, total, free = parts
        out.append(Found(Device(uuid, name, int(float(total)) * 2**20, int(float(free)) * 2**20, "cuda"),
                         int(i), "nvidia-smi"))
    return out


def _rocm_smi() -> list[Found]:
    if not shutil.which("rocm-smi"):
        return []
    res = procs.run(["rocm-smi", "--showmeminfo", "vram", "--showproductname", "--json"], timeout=30)
    return parse_rocm_smi(res.stdout) if res.rc == 0 else []


def parse_rocm_smi(text: str) -> list[Found]:
    try:
        data = json.loads(text)
    except ValueError:
        return []
    out = []
    for card, v in sorted(data.items()):
        if not card.startswith("card"):
            continue
        total = int(v.get("VRAM Total Memory (B)", 0))
        used = int(v.get("VRAM Total Used Memory (B)", 0))
        name = v.get("Card Series") or v.get("Card series") or card
        out.append(Found(Device(card[4:], name, total, total - used, "rocm"), int(card[4:]), "rocm-smi"))
    return out


def host_memory() -> tuple[int, int]:
    """(total, available) bytes of this machine's memory (/proc/meminfo; 0, 0 where unknown)."""
    info = {}
    try:
        for line in open("/proc/meminfo"):
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    total = info.get("MemTotal", 0)
    return total, info.get("MemAvailable", total)


def _host() -> Found:
    from orchestrator.tools.toolchain import cpu_model

    total, available = host_memory()
    return Found(Device("cpu", f"{cpu_model()} ({os.cpu_count()} threads)", total, available, "cpu"), 0, "proc")
