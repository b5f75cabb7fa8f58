"""A job as data: what to run, on what, how to judge it, and what it needs. Pure: no I/O.

A spec names its tool (not a path) and refers to its inputs and outputs by key, so it can be
shipped as JSON to the machine that runs it; the worker there resolves the references against its
own toolchain and workspace (`execute/worker.py`). Specs are built when a job becomes ready, because
some judges need an upstream result (a KLD run must report the reference run's PPL); each job kind
builds its own (`jobs/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ref(Strict):
    """A path known only where the job runs: an input (the source model, a corpus, a given imatrix
    file) by its content key, an artifact of another job by its key, this job's own output, or the tool."""

    ref: Literal["tool", "input", "model", "imatrix", "logits", "output", "stream", "stdout"]
    key: str = ""
    label: str = ""  # a model artifact's file name begins with its type (reference-F16, Q4_K_M)
    first: int = 0   # reference logits: served from chunk `first` (0-based) …
    count: int = 0   # … `count` chunks of the file, through a pipe (0: the whole file, as it is)


Arg = Union[str, Ref]


class Judge(Strict):
    """What the output must show for the job to count as done."""

    n_vocab: int | None = None
    ctx: int | None = None
    base_ppl: float | None = None       # a KLD run must report the reference run's PPL
    chunks: int | None = None           # … over exactly these chunks (a part of a larger base, served)
    precision: float | None = None      # chunks: auto — run again over more chunks until the KLD ± is this
    max_chunks: int | None = None       # … fraction of its mean, or these chunks were read
    ppl_chunks: list[float] = Field(default_factory=list)  # … the reference PPL after each chunk
    ppl_from_file: bool = False         # base_ppl is the file's own figure: it must match to its digits
    n_tests: int | None = None          # a bench must produce every test it was asked for
    overrides: list[str] = Field(default_factory=list)  # tensor_types patterns: llama-quantize must apply one
    task: str | None = None             # a task run: the recipe's task name, its file's format, and the
    task_format: str | None = None      # … tasks asked (None: all the file holds)
    tasks: int | None = None


class Expect(Strict):
    """An artifact a job reads, as it was when it was made: the worker checks it before the tool runs."""

    ref: Ref
    bytes: int
    sha256: str


class Resources(Strict):
    """What a job holds while it runs. `device_bytes` is reserved on one device (ledger);
    `exclusive` keeps every other job off that device; `quiet_host` keeps CPU-heavy jobs off the box."""

    where: Literal["cpu", "device"]
    threads: int = 1        # host threads held (0: a job on a GPU that leaves the CPU to others)
    device_bytes: int = 0
    feed_bytes: int = 0     # of device_bytes, what the reference run feeding it holds (a gang holds it once)
    exclusive: bool = False
    quiet_host: bool = False


class JobSpec(Strict):
    key: str
    kind: str               # a registered job kind (jobs.KINDS)
    label: str
    deps: tuple[str, ...] = ()
    tool: str
    argv: list[Arg]
    output: Ref | None = None
    judge: Judge = Field(default_factory=Judge)
    timeout_s: float
    resources: Resources
    expect: list[Expect] = Field(default_factory=list)
    feed: list[Arg] | None = None  # the reference run writing the "stream" this job reads (evaluation.logits)
    then: list[Arg] | None = None  # a tool run after its own succeeds, reading its stdout (Ref "stdout"): the
                                   # judge sees both (a generation's text, then its tokens)


class Outcome(Strict):
    """What a worker reports back; only the coordinator writes it to the store."""

    key: str
    ok: bool
    result: dict = Field(default_factory=dict)
    artifact: str = ""          # the output's path where the job ran
    reason: str = ""
    stderr_tail: str = ""
    wall_s: float = 0.0
    argv: str = ""
    log_dir: str = ""
    out_of_memory: bool = False
    device: str = ""
    machine: bool = False       # failed because of the machine (disk, signal, memory, a damaged input):
                                # the next plain `run` tries it again
    bad_input: str = ""         # the key of an artifact found damaged before the tool ran
    hashing: bool = False       # its artifact's sha256 follows, hashed beside the next tool (an amendment)


@dataclass(frozen=True)
class Threads:
    """How the host's cores are shared where the recipe sets no threads: the -t of CPU jobs (quantize)
    and of device jobs (None: the tool's default), and the host threads each is accounted for."""

    cpu: int | None = None
    cpu_hold: int = 1
    device: int | None = None
    device_hold: int = 1
