"""Find, build and identify the llama.cpp tools quantsweep drives.

Order of preference: the directory the user names (--llama-cpp or QUANTSWEEP_LLAMA_CPP), a
toolchain quantsweep built before (cached outside the repository, keyed by source and flags),
then the tools on PATH. `build` compiles the four tools from the llama.cpp tree vendored in
the llama-cpp-python sdist on PyPI, so no download from outside the package registries happens.

Two toolchains: mainline llama.cpp, and ik_llama.cpp (`build --ik`, from the ik-llama-cpp-python sdist),
a fork with more weight types and faster CPU kernels. A recipe names the one it measures with
(`toolchain: ik`); every lookup here is for one of them, so an ik build never answers for mainline.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from orchestrator import procs
from orchestrator.errors import ToolchainError

TOOLS = ("llama-quantize", "llama-perplexity", "llama-bench", "llama-imatrix")
# built with them and used where present (a toolchain of the user's may lack them): llama-tokenize counts a
# corpus's tokens at plan time, reading only the model's vocabulary; llama-completion runs `generate:` cells
HELPERS = ("llama-tokenize", "llama-completion")
SDIST_PACKAGE, SDIST_VERSION = "llama-cpp-python", "0.3.36"
SDIST_SUBDIR = "vendor/llama.cpp"
PINNED_COMMIT = "0c1e570"


@dataclass(frozen=True)
class Source:
    """Where a toolchain's tree comes from: a PyPI sdist that vendors it (no .git, so the pin is the sdist's
    version, and the binaries say commit "unknown")."""
    flavor: str            # "mainline" | "ik": what a recipe's `toolchain:` names
    title: str             # as the user reads it
    package: str
    version: str
    subdir: str
    pin: str               # recorded as the toolchain's commit
    examples: bool = False  # its tools are examples (ik_llama.cpp) rather than tools/ (mainline)
    helpers: tuple[str, ...] = HELPERS  # the helpers built with its tools

    @property
    def archive(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}"


SOURCES = {
    "mainline": Source("mainline", "llama.cpp", SDIST_PACKAGE, SDIST_VERSION, SDIST_SUBDIR, PINNED_COMMIT),
    "ik": Source("ik", "ik_llama.cpp", "ik-llama-cpp-python", "0.1.5", "vendor/ik_llama.cpp",
                 "ik-llama-cpp-python-0.1.5", examples=True, helpers=("llama-tokenize",)),
}
# ik_llama.cpp's sdist lacks the script its common/CMakeLists.txt runs to write build-info.cpp; this one
# does what mainline's does (the root's cmake/build-info.cmake finds no git: commit "unknown")
IK_BUILD_INFO_SCRIPT = """\
include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/build-info.cmake)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/common/build-info.cpp.in ${CMAKE_CURRENT_SOURCE_DIR}/common/build-info.cpp)
"""

VERSION_RE = re.compile(
    r"version: (?:(?P<semver>\d+\.\d+\.\d+[^\s(]*) \(build (?P<n1>\d+), commit (?P<c1>[0-9a-f]+|unknown)\)"
    r"|(?P<n2>\d+) \((?P<c2>[0-9a-f]+|unknown)\))")
COMPILER_RE = re.compile(r"built with (.+?) for (.+)")
DEVICE_RE = re.compile(r"^\s*([A-Za-z]+)\d+:\s*(.+)$", re.M)


def cache_root() -> Path:
    """Absolute: the tools found there run in their jobs' log folders, not where quantsweep was started."""
    return Path(os.environ.get("QUANTSWEEP_CACHE") or Path.home() / ".cache" / "quantsweep").expanduser().resolve()


@dataclass(frozen=True)
class Toolchain:
    bin_dir: Path
    commit: str
    version: str
    compiler: str
    target: str
    backends: tuple[str, ...]
    devices: tuple[str, ...] = ()
    cuda_fa_quants: str | None = None
    origin: str = "user"
    build_flags: tuple[str, ...] = field(default=())
    flavor: str = "mainline"

    def exe(self, tool: str) -> str:
        return str(self.bin_dir / tool)

    def has(self, tool: str) -> bool:
        return os.access(self.bin_dir / tool, os.X_OK)

    def identity(self) -> dict:
        """What of the toolchain can change a number: part of every job's content key (mainline's keys are
        the ones they were before a second toolchain existed)."""
        ident = {"commit": self.commit, "backends": list(self.backends), "compiler": self.compiler,
                 "cuda_fa_quants": self.cuda_fa_quants}
        return ident if self.flavor == "mainline" else {**ident, "flavor": self.flavor}

    @property
    def title(self) -> str:
        return SOURCES[self.flavor].title if self.flavor in SOURCES else self.flavor

    def describe(self) -> dict:
        d = asdict(self)
        d["bin_dir"] = str(self.bin_dir)
        return d


def _tools_in(directory: Path) -> Path | None:
    for cand in (directory, directory / "bin", directory / "build" / "bin"):
        if all((cand / t).is_file() and os.access(cand / t, os.X_OK) for t in TOOLS):
            return cand
    return None


def find(llama_cpp: str | None = None, flavor: str = "mainline") -> Toolchain:
    """The toolchain of this flavor to use, identified; ToolchainError with what to do when there is none.
    ik_llama.cpp tools are found where the user names them (QUANTSWEEP_IK_LLAMA_CPP for ik) or as our build."""
    src = SOURCES[flavor]
    named = llama_cpp or os.environ.get("QUANTSWEEP_IK_LLAMA_CPP" if flavor == "ik" else "QUANTSWEEP_LLAMA_CPP")
    if named:
        bin_dir = _tools_in(Path(named).expanduser().resolve())  # tools run in their job's log folder
        if bin_dir is None:
            raise ToolchainError(f"{named}: does not hold {', '.join(TOOLS)} (looked in ., bin/, build/bin/)")
        return _of_flavor(_with_build_record(identify(bin_dir)), flavor, named)
    built = [t for t in _cached_builds() if t.flavor == flavor]
    if built:
        return built[0]
    on_path = [shutil.which(t) for t in TOOLS]
    if flavor == "mainline" and all(on_path) and on_path[0] is not None:
        return identify(Path(on_path[0]).parent)
    flag, env = ("--ik", "QUANTSWEEP_IK_LLAMA_CPP") if flavor == "ik" else ("", "QUANTSWEEP_LLAMA_CPP")
    raise ToolchainError(f"no {src.title} tools found: run `quantsweep toolchain build{' ' + flag if flag else ''}`"
                         f", or pass --llama-cpp DIR / set {env} to a directory holding " + ", ".join(TOOLS))


def _of_flavor(tc: Toolchain, flavor: str, named: str) -> Toolchain:
    if tc.flavor != flavor:
        raise ToolchainError(f"{named}: holds {tc.title} tools, and the recipe measures with {SOURCES[flavor].title}"
                             f" (toolchain: {flavor}); name a {SOURCES[flavor].title} build, or set the recipe's "
                             f"toolchain: {tc.flavor}")
    return tc


def _cached_builds() -> list[Toolchain]:
    root = cache_root() / "toolchains"
    found = []
    for meta in sorted(root.glob("*/toolchain.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if _tools_in(meta.parent / "bin"):
            data = json.loads(meta.read_text())
            data["bin_dir"] = meta.parent / "bin"
            for k in ("backends", "devices", "build_flags"):
                data[k] = tuple(data.get(k) or ())
            found.append(Toolchain(**{k: v for k, v in data.items() if k in Toolchain.__dataclass_fields__}))
    return found


def _with_build_record(tc: Toolchain) -> Toolchain:
    """Tools of a build of ours copied elsewhere (the image's /opt/quantsweep/toolchain): what the build
    recorded beside them (its commit: a vendored tree's binaries print "unknown"; its flags) joins what
    the tools say here (their devices on this machine)."""
    meta_path = tc.bin_dir.parent / "toolchain.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return tc
    return replace(tc, commit=meta.get("commit") if tc.commit == "unknown" else tc.commit, origin="built",
                   build_flags=tuple(meta.get("build_flags") or ()), cuda_fa_quants=meta.get("cuda_fa_quants"),
                   flavor=meta.get("flavor") or tc.flavor)


def identify(bin_dir: Path, origin: str = "user", build_flags: tuple[str, ...] = (),
             cuda_fa_quants: str | None = None) -> Toolchain:
    """Ask the tools themselves: version/commit from --version, devices from llama-bench."""
    res = procs.run([str(bin_dir / "llama-perplexity"), "--version"], timeout=60)
    text = res.stdout + res.stderr
    m = VERSION_RE.search(text)
    if res.rc != 0 or not m:
        raise ToolchainError(f"{bin_dir}/llama-perplexity --version gave no version (rc {res.rc}): "
                             f"{text.strip()[:200]}")
    commit = m.group("c1") or m.group("c2")
    version = m.group("semver") or m.group("n2")
    cm = COMPILER_RE.search(text.replace("\r", ""))
    devs = procs.run([str(bin_dir / "llama-bench"), "--list-devices"], timeout=60)
    devices = tuple(f"{kind}: {desc.strip()}" for kind, desc in DEVICE_RE.findall(devs.stdout))
    backends = tuple(sorted({d.split(":")[0] for d in devices} - {"CPU"}))
    if not backends:  # ik_llama.cpp's llama-bench lists no devices: what the build was made with
        backends = tuple(b for b, flag in (("CUDA", "-DGGML_CUDA=ON"), ("ROCm", "-DGGML_HIP=ON"))
                         if flag in build_flags) or ("CPU",)
    return Toolchain(bin_dir=bin_dir, commit=commit, version=version or "",
                     compiler=cm.group(1) if cm else "", target=cm.group(2) if cm else "",
                     backends=backends, devices=devices, origin=origin,
                     build_flags=tuple(build_flags), cuda_fa_quants=cuda_fa_quants, flavor=flavor_of(bin_dir))


IK_MARK_RE = re.compile(r"\bIQ4_KS\b")


def flavor_of(bin_dir: Path) -> str:
    """ik_llama.cpp's llama-quantize lists its own types (IQ4_KS…) in --help; mainline's does not."""
    res = procs.run([str(bin_dir / "llama-quantize"), "--help"], timeout=60)
    return "ik" if IK_MARK_RE.search(res.stdout + res.stderr) else "mainline"


# ---------------------------------------------------------------------------------------------
# building from the pinned source


def cuda_available() -> bool:
    """A CUDA build only where it can run: nvcc to compile and an NVIDIA device to run on."""
    has_device = any(Path("/dev").glob("nvidia[0-9]*")) or bool(os.environ.get("QUANTSWEEP_FORCE_CUDA"))
    return shutil.which("nvcc") is not None and has_device


FA_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "bf16", "f16")


def normalize_fa_quants(spec: str) -> str:
    """`all`, or K-V pairs such as `q8_0-q4_0`: checked, sorted, f16-f16 always included."""
    spec = spec.strip().lower()
    if spec == "all":
        return spec
    pairs = {"f16-f16"}
    for item in filter(None, (p.strip() for p in spec.replace(";", ",").split(","))):
        k, _, v = item.partition("-")
        if k not in FA_TYPES or v not in FA_TYPES:
            raise ToolchainError(f"--fa-quants: {item!r} is not a K-V pair of {', '.join(FA_TYPES)}")
        pairs.add(f"{k}-{v}")
    return ",".join(sorted(pairs))


def fa_compiled(fa_quants: str | None, k: str, v: str) -> bool:
    """Whether a CUDA build has a flash-attention kernel for this K/V pair (else it runs on the CPU)."""
    if fa_quants is None or fa_quants == "all":
        return True
    return f"{k}-{v}" in fa_quants.split(",")


def fa_warning(tc: Toolchain, pairs) -> str | None:
    """A CUDA build we made without a flash-attention kernel for some of these K/V pairs: llama.cpp
    then runs that attention on the CPU, which is correct but far slower (timings would mislead)."""
    if "CUDA" not in tc.backends or not tc.cuda_fa_quants:
        return None
    missing = [f"{k}/{v}" for k, v in pairs if not fa_compiled(tc.cuda_fa_quants, k, v)]
    if not missing:
        return None
    return (f"warning: this CUDA build has no flash-attention kernel for K/V {', '.join(missing)}; llama.cpp "
            "runs that attention on the CPU (slow). Rebuild with `quantsweep toolchain build --fa-quants all`")


# a portable build (an image for other machines): CPU code for x86-64-v3 (AVX2, FMA), CUDA code for
# Ampere, Ada and Hopper, the GPUs rented boxes have; HIP code for MI200, MI300 and RDNA3 cards
PORTABLE_CUDA_ARCHS = "80;86;89;90"
PORTABLE_AMDGPU_TARGETS = "gfx90a;gfx942;gfx1100"


def rocm_available() -> bool:
    """A ROCm (HIP) build only where it can run: hipconfig to compile and an AMD GPU (/dev/kfd)."""
    return shutil.which("hipconfig") is not None and (Path("/dev/kfd").exists()
                                                     or bool(os.environ.get("QUANTSWEEP_FORCE_ROCM")))


def _hip_env() -> dict[str, str]:
    """What llama.cpp's HIP build needs from ROCm: its clang as the HIP compiler, and ROCm's root."""
    def ask(flag: str) -> str:
        res = procs.run(["hipconfig", flag], timeout=60)
        return res.stdout.strip() if res.rc == 0 else ""

    llvm, root = ask("-l"), ask("-R")
    return {k: v for k, v in (("HIPCXX", f"{llvm}/clang" if llvm else ""), ("HIP_PATH", root)) if v}


def build_flags(cuda: bool, fa_quants: str = "all", portable: bool = False, rocm: bool = False,
                flavor: str = "mainline") -> list[str]:
    ik = flavor == "ik"
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
             "-DLLAMA_BUILD_TESTS=OFF", f"-DLLAMA_BUILD_EXAMPLES={'ON' if ik else 'OFF'}", "-DLLAMA_BUILD_SERVER=OFF"]
    flags += ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"] if portable \
        else ["-DGGML_NATIVE=ON"]
    if cuda and ik:  # ik_llama.cpp: every flash-attention K/V pair or its default few
        flags += ["-DGGML_CUDA=ON", f"-DGGML_CUDA_FA_ALL_QUANTS={'ON' if fa_quants == 'all' else 'OFF'}"]
    elif cuda:
        # by default every flash-attention K/V pair, so no cache pair falls back to the CPU
        flags += ["-DGGML_CUDA=ON", f"-DGGML_CUDA_FA_QUANTS={fa_quants}"]
        if portable:
            flags.append(f"-DCMAKE_CUDA_ARCHITECTURES={PORTABLE_CUDA_ARCHS}")
    if rocm:  # flash attention for every K/V pair is part of llama.cpp's HIP build as it is
        flags.append("-DGGML_HIP=ON")
        if portable:
            flags.append(f"-DAMDGPU_TARGETS={PORTABLE_AMDGPU_TARGETS}")
    return flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_key(flags: list[str], src: Source = SOURCES["mainline"]) -> str:
    # GGML_NATIVE tunes for this CPU, so the CPU model is part of what was built
    basis = {"source": f"{src.package}=={src.version}", "flags": flags, "machine": platform.machine(),
             "tools": [*TOOLS, *src.helpers],
             "cpu": cpu_model() if "-DGGML_NATIVE=ON" in flags else "portable"}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


STEP_RE = re.compile(rb"^\[\s*(\d+)%\]|^\[(\d+)/(\d+)\]", re.M)  # make's [ 42%], ninja's [123/456]


def build_step(text: bytes) -> str | None:
    """Where a build's output says it is: "42 %" (make) or "step 123 of 456" (ninja), None before any step."""
    matches = list(STEP_RE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return f"{int(last.group(1))} %" if last.group(1) else f"step {int(last.group(2))} of {int(last.group(3))}"


@contextmanager
def build_progress(out: Path, log, every_s: float = 20.0):
    """Say, every `every_s` while a build runs, how far its output says it is (a 20-minute build is not
    silent)."""
    done = threading.Event()
    t0 = time.monotonic()

    def watch() -> None:
        said = None
        while not done.wait(every_s):
            try:
                step = build_step(out.read_bytes())
            except OSError:
                continue
            if step and step != said:
                log(f"  building: {step} ({int(time.monotonic() - t0) // 60}m{int(time.monotonic() - t0) % 60:02d}s)")
                said = step

    thread = threading.Thread(target=watch, name="quantsweep-build-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def build(cuda: bool | None = None, jobs: int | None = None, fa_quants: str = "all",
          log=print, portable: bool = False, rocm: bool | None = None, flavor: str = "mainline") -> Toolchain:
    """Build the four tools and the helpers once per machine (cached by source and flags) and identify
    them. `portable`: for other machines than this one (an image), not tuned to this CPU. The Dockerfile
    builds through here too: one list of flags. `flavor` "ik": ik_llama.cpp's tree instead of mainline's."""
    src = SOURCES[flavor]
    if cuda is None:
        cuda = cuda_available()
    if rocm is None:
        rocm = not cuda and rocm_available()
    if cuda and rocm:
        raise ToolchainError("one GPU backend a build: --cuda or --rocm")
    if rocm and flavor == "ik":
        raise ToolchainError("ik_llama.cpp has no ROCm (HIP) backend: build it for the CPU or CUDA")
    fa_quants = normalize_fa_quants(fa_quants)
    flags = build_flags(cuda, fa_quants, portable, rocm, flavor)
    key = build_key(flags, src)
    dest = cache_root() / "toolchains" / key
    if _tools_in(dest / "bin") and (dest / "toolchain.json").exists():
        log(f"toolchain {key} already built: {dest / 'bin'}")
        return next(t for t in _cached_builds() if t.bin_dir == dest / "bin")
    for tool in ("cmake",):
        if shutil.which(tool) is None:
            raise ToolchainError(f"building llama.cpp needs {tool} on PATH")
    tree = fetch_source(log=log, src=src)
    work = cache_root() / "build" / key
    logs = cache_root() / "toolchains" / f"{key}.logs"
    log(f"configuring {src.title} {src.pin} ({'CUDA' if cuda else 'ROCm' if rocm else 'CPU'}) in {work}")
    _check(procs.run(["cmake", "-S", str(tree), "-B", str(work), *flags],
                     log_dir=logs, name="configure", env=procs.child_env(_hip_env() if rocm else None)),
           "cmake configure")
    log(f"building {', '.join((*TOOLS, *src.helpers))} with {jobs or os.cpu_count()} jobs "
        f"({'about 15 minutes on 2 cores' if flavor == 'ik' else 'several minutes'})")
    with build_progress(logs / "build.stdout", log):
        _check(procs.run(["cmake", "--build", str(work), "--config", "Release", "-j",
                          str(jobs or os.cpu_count() or 2), "--target", *TOOLS, *src.helpers],
                         log_dir=logs, name="build", env=procs.child_env()), "cmake build")
    tc = install(work / "bin", dest, flags, cuda_fa_quants=fa_quants if cuda else None, src=src)
    shutil.rmtree(work, ignore_errors=True)
    log(f"built toolchain {key}: {dest / 'bin'}")
    return tc


def install(built: Path, dest: Path, flags: list[str], cuda_fa_quants: str | None = None,
            src: Source = SOURCES["mainline"]) -> Toolchain:
    """Copy the tools a build made into the cache beside what identifies them (toolchain.json), whole or not
    at all (a temporary directory renamed)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    (tmp / "bin").mkdir()
    for tool in (*TOOLS, *src.helpers):
        shutil.copy2(built / tool, tmp / "bin" / tool)
    tc = identify(tmp / "bin", origin="built", build_flags=tuple(flags), cuda_fa_quants=cuda_fa_quants)
    if tc.flavor != src.flavor:
        raise ToolchainError(f"the tools built from {src.package} {src.version} identify as {tc.title}")
    meta = tc.describe()
    if meta["commit"] == "unknown":  # a vendored tree has no git: the binaries cannot know their commit
        meta["commit"] = src.pin
    meta.pop("bin_dir")
    (tmp / "toolchain.json").write_text(json.dumps(meta, indent=2) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return next(t for t in _cached_builds() if t.bin_dir == dest / "bin")


def fetch_source(log=print, src: Source = SOURCES["mainline"]) -> Path:
    """The pinned tree, from the sdist on PyPI that vendors it (cached)."""
    dest = cache_root() / "src" / f"{src.package}-{src.version}"
    if (dest / "CMakeLists.txt").exists():
        return dest
    dl = cache_root() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    sdists = list(dl.glob(f"{src.archive}.tar.gz"))
    if not sdists:
        log(f"downloading the {src.package}=={src.version} sdist from PyPI")
        # the sdist of this package only: with ":all:", pip builds every build dependency of its metadata
        # step from source too (nine minutes on 2 cores, against seconds from their wheels)
        _check(procs.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src.package,
                          f"{src.package}=={src.version}", "-d", str(dl)],
                         timeout=1800), "pip download")
        sdists = list(dl.glob(f"{src.archive}.tar.gz"))
        if not sdists:
            raise ToolchainError(f"pip download left no sdist of {src.package} in {dl}")
    tmp = Path(tempfile.mkdtemp(prefix=".src.", dir=dl))
    prefix = f"{src.archive}/{src.subdir}/"
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        kwargs: dict = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp, members=[m for m in members if m.name], **kwargs)
    if src.flavor == "ik":
        script = tmp / "common" / "cmake" / "build-info-gen-cpp.cmake"
        if not script.exists():
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(IK_BUILD_INFO_SCRIPT)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)
    return dest


def _check(res: procs.ProcResult, what: str) -> None:
    if res.rc != 0:
        where = f" (logs: {res.stderr_path.parent})" if res.stderr_path else ""
        raise ToolchainError(f"{what} failed with rc {res.rc}{where}:\n{res.tail(15)}")
