"""The device inventory: NVML, nvidia-smi's CSV, rocm-smi's JSON, the CPU; pinning; restriction."""

import sys
import types

import pytest

from orchestrator.execute import devices
from orchestrator.errors import UsageError

# `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.free --format=csv,noheader,nounits`, the format
# nvidia-smi documents (MiB); a two-GPU box
SMI = """0, GPU-8932f937-d72c-4106-c12f-20bd9faed9f6, NVIDIA GeForce RTX 3090, 24576, 23800
1, GPU-2b1f3a55-0e6d-4c5f-9e1a-7d0c7b3e2a10, NVIDIA GeForce RTX 3090, 24576, 1024
"""


def test_nvidia_smi_csv():
    found = devices.parse_nvidia_smi(SMI)
    assert [(f.index, f.device.id[:12], f.device.total // 2**20, f.device.free // 2**20) for f in found] == \
        [(0, "GPU-8932f937", 24576, 23800), (1, "GPU-2b1f3a55", 24576, 1024)]
    assert found[0].pin_env() == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                                  "CUDA_VISIBLE_DEVICES": "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"}


def test_rocm_smi_json_and_pinning():
    text = ('{"card0": {"VRAM Total Memory (B)": "25753026560", "VRAM Total Used Memory (B)": "1048576", '
            '"Card Series": "Radeon RX 7900 XTX"}, "system": {}}')
    (f,) = devices.parse_rocm_smi(text)
    assert (f.device.kind, f.device.name, f.device.free) == ("rocm", "Radeon RX 7900 XTX", 25753026560 - 1048576)
    assert f.pin_env() == {"HIP_VISIBLE_DEVICES": "0"}


def test_this_machine_without_a_gpu_runs_on_the_cpu():
    found = devices.find(("CPU",))
    assert found[-1].device.kind == "cpu" and found[-1].device.total > 0
    inv = devices.inventory(found)
    assert [d.id for d in inv.devices] == ["cpu"] and inv.host_threads >= 1


def _fake_nvml(monkeypatch, n=2):
    m = types.ModuleType("pynvml")
    m.NVMLError = type("NVMLError", (Exception,), {})
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: n
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h}aaaaaaa"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30, free=(80 - 10 * h) * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", m)


def test_nvml_inventory_restriction_and_backend_check(monkeypatch):
    _fake_nvml(monkeypatch)
    found = devices.find(("CUDA",))
    assert [f.device.id for f in found] == ["GPU-0aaaaaaa", "GPU-1aaaaaaa", "cpu"] and found[0].source == "nvml"
    assert [d.id for d in devices.inventory(found).devices] == ["GPU-0aaaaaaa", "GPU-1aaaaaaa"]
    assert [f.device.id for f in devices.find(("CUDA",), only="1")][:-1] == ["GPU-1aaaaaaa"]
    assert [f.device.id for f in devices.find(("CUDA",), only="GPU-0")][:-1] == ["GPU-0aaaaaaa"]
    with pytest.raises(UsageError, match="--devices 7: no such device here"):
        devices.find(("CUDA",), only="7")
    cpu_build = devices.find(("CPU",))
    assert not cpu_build[0].usable  # a CPU toolchain cannot use the GPUs: jobs run on the CPU
    assert [d.id for d in devices.inventory(cpu_build).devices] == ["cpu"]
    rows = devices.table(cpu_build, ("CPU",))
    assert rows[0][6] == "no: this toolchain has CPU, not CUDA"
