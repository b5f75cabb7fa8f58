"""What quantsweep needs from a GGUF's metadata: its keys and tensor table, read without the tensors' data or
the tokenizer's long arrays (the `gguf` package gives the type names and block sizes)."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.errors import InputFileError
from orchestrator.files import write_memo

MEMO_VERSION = "v3"  # bump when GGUFInfo gains a field
OLDER_MEMOS = ("v2",)  # still read for what they hold (the architecture), never written
SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str
    n_vocab: int
    file_type: int | None
    tensor_bytes: int
    n_params: int
    tensor_types: dict[str, int]
    context_length: int | None
    # every `<architecture>.*` key (layers, heads, head sizes, sliding window…): the memory model's input
    hparams: dict = field(default_factory=dict)
    type_bytes: dict[str, int] = field(default_factory=dict)  # tensor bytes per ggml type: the real mix

    @property
    def file_type_name(self) -> str:
        """What the file says it is (`general.file_type`, e.g. Q4_K_M); its tensors may be a mix."""
        from orchestrator.tools.llama_types import file_type_name

        return file_type_name(self.file_type) or f"{self.main_type} (most tensors)"

    @property
    def bpw(self) -> float:
        return self.tensor_bytes * 8 / self.n_params if self.n_params else float("nan")

    @property
    def main_type(self) -> str:
        """The most common tensor type other than F32 (norms): what the file 'is'."""
        types = {t: n for t, n in self.tensor_types.items() if t != "F32"} or self.tensor_types
        return max(types, key=lambda t: types[t]) if types else "?"

    @property
    def is_quantized(self) -> bool:
        return any(t not in ("F32", "F16", "BF16") for t in self.tensor_types)


def check_file(path: Path, role: str = "model") -> Path:
    """`path` if it is a file that starts like a GGUF; else InputFileError saying what it is."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file (the {role}, a GGUF file)")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a GGUF file (the {role}: name the .gguf inside it)")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file (the {role} must be a GGUF file)")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"GGUF":
        raise InputFileError(f"{path}: not a GGUF file ({describe_bytes(head)}; a GGUF starts with 'GGUF')")
    return path


def check_readable(path: Path) -> Path:
    """`path` if its whole metadata and tensor table parse (no tensor data is read). A file read before,
    unchanged since (its hash and metadata memoized), is not parsed again."""
    from orchestrator.files import known_sha256
    from orchestrator.tools.toolchain import cache_root

    check_file(path)
    sha = known_sha256(path, cache_root() / "file-hashes.json")
    if sha is None or memoized(cache_root() / "gguf-info", sha) is None:
        _reader(path)
    return path


def _reader(path: Path) -> Gguf:
    try:
        return Gguf(path)
    except (ValueError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable GGUF (truncated or damaged: {exc})") from None


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # ne[0] first, as GGUF stores it
    type_name: str
    n_elements: int
    n_bytes: int


class LongArray(int):
    """An array value too long to be worth reading (a tokenizer's vocabulary, its merges): its length."""


class Gguf:
    """A GGUF's metadata and tensor table, and nothing else: what a description needs. gguf-py's reader
    builds an object for every element of every array, seconds for a 262k vocabulary; this one skips an
    array of more than `keep` elements by its length (a string array by the string lengths alone), and
    checks that every tensor's data lies inside the file, as a truncated file's would not."""

    _SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                12: "<d"}
    STRING, ARRAY = 8, 9

    def __init__(self, path: Path, keep: int = 4096):
        import mmap

        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        from orchestrator.tools.llama_types import IK_GGML_TYPES

        self.keep = keep
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            self._buf = buf
            self._at = 0
            if bytes(buf[:4]) != b"GGUF":
                raise ValueError("GGUF magic invalid")
            self._at = 4
            version = self._unpack("<I")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version}, not one this reader knows (2, 3)")
            n_tensors, n_kv = self._unpack("<Q"), self._unpack("<Q")
            self.fields: dict = {}
            for _ in range(n_kv):
                key = self._string()
                if key in self.fields:
                    raise ValueError(f"duplicate key {key}")
                self.fields[key] = self._value(self._unpack("<I"))
            infos = []
            for _ in range(n_tensors):
                name = self._string()
                shape = tuple(self._unpack("<Q") for _ in range(self._unpack("<I")))
                infos.append((name, shape, self._unpack("<I"), self._unpack("<Q")))
            align = self.fields.get("general.alignment", 32)
            if not isinstance(align, int) or align <= 0 or align & (align - 1):
                raise ValueError(f"general.alignment {align!r} is not a power of two")
            data = -(-self._at // align) * align
            size = len(buf)
            del self._buf  # the map closes with the file
        self.tensors: list[Tensor] = []
        for name, shape, raw_type, offset in infos:
            try:
                qtype = GGMLQuantizationType(raw_type)
                type_name, (block, type_size) = qtype.name, GGML_QUANT_SIZES[qtype]
            except (ValueError, KeyError):
                if raw_type not in IK_GGML_TYPES:  # written by ik_llama.cpp (IQ4_KS, IQ2_KT…)
                    raise ValueError(f"tensor {name} has type {raw_type}, "
                                     "unknown to llama.cpp and ik_llama.cpp") from None
                type_name, block, type_size = IK_GGML_TYPES[raw_type]
            n = 1
            for d in shape:
                n *= d
            n_bytes = n * type_size // block
            if data + offset + n_bytes > size:
                raise ValueError(f"tensor {name}'s data ends at byte {data + offset + n_bytes}, "
                                 f"past the end of the file ({size} bytes)")
            self.tensors.append(Tensor(name, shape, type_name, n, n_bytes))

    def _unpack(self, fmt: str):
        (v,) = struct.unpack_from(fmt, self._buf, self._at)
        self._at += struct.calcsize(fmt)
        return v

    def _string(self) -> str:
        n = self._unpack("<Q")
        if self._at + n > len(self._buf):
            raise ValueError("a string runs past the end of the file")
        s = bytes(self._buf[self._at:self._at + n]).decode("utf-8")
        self._at += n
        return s

    def _value(self, kind: int):
        if kind == self.STRING:
            return self._string()
        if kind in self._SCALARS:
            return self._unpack(self._SCALARS[kind])
        if kind != self.ARRAY:
            raise ValueError(f"unknown value type {kind}")
        item, n = self._unpack("<I"), self._unpack("<Q")
        if n <= self.keep:
            return [self._value(item) for _ in range(n)]
        if item in self._SCALARS:
            self._at += n * struct.calcsize(self._SCALARS[item])
        elif item == self.STRING:
            unpack, buf, at = struct.unpack_from, self._buf, self._at
            for _ in range(n):
                at += 8 + unpack("<Q", buf, at)[0]
            self._at = at
        else:
            for _ in range(n):
                self._value(item)
        if self._at > len(self._buf):
            raise ValueError("an array runs past the end of the file")
        return LongArray(n)


def describe_bytes(head: bytes) -> str:
    """What a file that should have been binary looks like, from its first bytes."""
    if not head:
        return "an empty file"
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if text.startswith("version https://git-lfs.github.com/spec/"):
                return "a Git LFS pointer, not the file itself: fetch it with `git lfs pull`"
            first = text.strip().splitlines()[0][:40] if text.strip() else ""
            return f"a text file beginning {first!r}" if first else "a text file"
    return f"a binary file beginning {head[:4]!r}"


def read(path: Path, memo_dir: Path | None = None, sha256: str | None = None) -> GGUFInfo:
    """Metadata of a GGUF (all shards of a split model); memoized by content hash."""
    memo = memo_dir / f"{sha256}.{MEMO_VERSION}.json" if memo_dir and sha256 else None
    known = memoized(memo_dir, sha256) if memo_dir and sha256 else None
    if known is not None:
        return known
    info = _read(Path(path))
    if memo is not None:
        write_memo(memo, json.dumps(asdict(info)))
    return info


def memoized(memo_dir: Path, sha256: str, older: bool = False) -> GGUFInfo | None:
    """The metadata read earlier from the file with this content hash, if any; with `older`, also
    from a memo of an earlier version (its newer fields left empty)."""
    if not sha256:
        return None
    for version in (MEMO_VERSION, *(OLDER_MEMOS if older else ())):
        memo = Path(memo_dir) / f"{sha256}.{version}.json"
        if memo.exists():
            return GGUFInfo(**json.loads(memo.read_text()))
    return None


def _read(path: Path) -> GGUFInfo:
    reader = _reader(path)
    fields = reader.fields
    arch = fields.get("general.architecture", "unknown")
    n_vocab = fields.get(f"{arch}.vocab_size") or len_of(fields.get("tokenizer.ggml.tokens"))
    types: dict[str, int] = {}
    type_bytes: dict[str, int] = {}
    n_bytes = n_params = 0
    for shard in shard_paths(path):
        r = reader if shard == path else _reader(check_file(shard, "model's shard"))
        for t in r.tensors:
            types[t.type_name] = types.get(t.type_name, 0) + 1
            type_bytes[t.type_name] = type_bytes.get(t.type_name, 0) + t.n_bytes
            n_bytes += t.n_bytes
            n_params += t.n_elements
    hparams = {k[len(arch) + 1:]: v for k, v in fields.items()
               if k.startswith(f"{arch}.") and not isinstance(v, LongArray)}
    return GGUFInfo(architecture=arch, name=fields.get("general.name", "") or "", n_vocab=int(n_vocab),
                    file_type=fields.get("general.file_type"), tensor_bytes=n_bytes, n_params=n_params,
                    tensor_types=types, type_bytes=type_bytes,
                    context_length=fields.get(f"{arch}.context_length"), hparams=hparams)


def len_of(value) -> int:
    return int(value) if isinstance(value, LongArray) else len(value) if isinstance(value, list) else 0


def shard_paths(first: Path) -> list[Path]:
    """Every file of the model whose first file is `first`: itself, or each shard of a split GGUF
    (NAME-00001-of-0000N.gguf), by name (whether they exist is the caller's question)."""
    m = SHARD_RE.match(first.name)
    if not m:
        return [first]
    n = int(m.group("n"))
    return [first.parent / f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]


def tensor_columns(path: Path) -> dict[str, int]:
    """Each tensor of a model (every shard) with its row length, ne[0]: what an importance matrix entry
    for it must have."""
    out = {}
    for shard in shard_paths(path):
        for t in _reader(shard).tensors:
            out[t.name] = int(t.shape[0])
    return out


def imatrix_entries(path: Path) -> dict[str, int]:
    """An importance matrix's entries (tensor name → values per row), from either format llama-quantize
    reads: GGUF (`<tensor>.in_sum2`, ne = [n_cols, n_experts]) or the legacy binary .dat."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return {t.name.removesuffix(".in_sum2"): int(t.shape[0]) for t in _reader(path).tensors
                if t.name.endswith(".in_sum2")}
    out = {}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<i", f.read(4))
            for _ in range(n):
                (length,) = struct.unpack("<i", f.read(4))
                name = f.read(length).decode()
                _ncall, nval = struct.unpack("<ii", f.read(8))
                f.seek(4 * nval, 1)
                out[name] = nval
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"{path}: not an importance matrix (neither GGUF nor llama-imatrix's .dat: {exc})") \
            from None
    return out


def check_imatrix(path: Path, model: Path) -> None:
    """An importance matrix computed for another model is refused before llama-quantize reads it (which
    would apply what matches by name, or stop midway on a size mismatch)."""
    entries, columns = imatrix_entries(path), tensor_columns(model)
    if not entries:
        raise InputFileError(f"{path}: an importance matrix with no entries")
    unknown = [n for n in entries if n not in columns]
    wrong = [n for n in entries if n in columns and entries[n] % columns[n] != 0]
    if unknown or wrong:
        n = unknown[0] if unknown else wrong[0]
        what = (f"{len(unknown)} of its {len(entries)} entries name tensors {model.name} lacks (e.g. {n})"
                if unknown else f"{len(wrong)} of its {len(entries)} entries have another row length than "
                f"{model.name}'s tensors (e.g. {n}: {entries[n]} values, rows of {columns[n]})")
        raise InputFileError(f"{path}: an importance matrix for another model: {what}")
