"""A streamed reference (`evaluation.logits: stream`): the reference run writes its logits into a pipe, a
gang of KLD runs (one or more cells of the same reference and context) read them from one pipe each, and
this relay carries every block to each of them, checked on the way. No logits file is written: a long
context's reference (gigabytes a chunk) costs no disk, and one reference run serves the whole gang.

The relay reads the header, forwards exactly the bytes the header promises (a writer that ends early is a
failure, even if the readers printed statistics of what they got), and computes the reference PPL the rows
hold, as the KLD runs will (scale·v + min of each scored token, float32): each must print it to its digits,
as against a file. The readers go in step (a pipe holds 64 KiB): one that stops reading stops the gang.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path

from orchestrator.tools import perplexity as tp

BLOCK = 8 << 20


class Relay:
    """`with Relay(folder, names) as r:` r.source is the pipe the reference run writes, r.sinks[i] the one
    the KLD run `names[i]` reads; after the tools ended, `error` says what went wrong between them (naming
    the reader that stopped), `ppl` is the reference PPL the rows held, `n_chunk` their chunks."""

    def __init__(self, folder: Path, names: list[str] | None = None):
        self.folder = folder
        self.names = names or ["the KLD run"]
        self.error: str | None = None
        self.ppl: float | None = None
        self.n_chunk = 0
        self.sent = 0
        self.done = False

    def __enter__(self) -> Relay:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".stream.", dir=self.folder))
        self.source = self._dir / "reference.kld"
        self.sinks = [self._dir / f"kld-{i}.kld" for i in range(len(self.names))]
        for fifo in (self.source, *self.sinks):
            os.mkfifo(fifo, 0o600)
        self._thread = threading.Thread(target=self._relay, name="quantsweep-stream", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _relay(self) -> None:
        import numpy as np

        try:
            with open(self.source, "rb") as src, contextlib.ExitStack() as stack:
                dst = [stack.enter_context(open(sink, "wb")) for sink in self.sinks]
                head = src.read(20)
                header = tp.parse_logits_header(head)
                if header is None:
                    self.error = "the reference run wrote no logits header"
                    return
                n_ctx, n_vocab, n_chunk = header
                self.n_chunk = n_chunk
                self._write(dst, head)
                tokens = self._copy(src, dst, 4 * n_chunk * n_ctx)
                if tokens is None:
                    return
                ids = np.frombuffer(tokens, dtype="<i4").reshape(n_chunk, n_ctx)
                rows, nv = tp.scored_per_chunk(n_ctx), 2 * ((n_vocab + 1) // 2) + 4
                per_block = max(1, BLOCK // (2 * nv))
                total, count, first = 0.0, 0, n_ctx // 2
                for c in range(n_chunk):
                    scored = ids[c, first + 1:first + 1 + rows].astype(np.int64)
                    for r0 in range(0, rows, per_block):
                        n = min(per_block, rows - r0)
                        block = self._copy(src, dst, n * nv * 2)
                        if block is None:
                            return
                        table = np.frombuffer(block, dtype="<u2").reshape(n, nv)
                        total += tp.rows_nll(table, scored[r0:r0 + n])
                        count += n
                self.ppl = math.exp(total / count) if count else None
                self.done = True
        except _Stopped as stop:
            self.error = f"{self.names[stop.reader]} stopped reading after {self.sent + stop.at} bytes"
        except OSError as exc:
            self.error = f"stream: {exc}"

    def _write(self, dst: list, block: bytes, at: int = 0) -> None:
        for i, d in enumerate(dst):
            try:
                d.write(block)
            except BrokenPipeError:
                raise _Stopped(i, at) from None

    def _copy(self, src, dst: list, length: int) -> bytes | None:
        """`length` bytes from the writer to the reader (returned), or None: the writer ended first."""
        parts, want = [], length
        while want:
            got = src.read(min(BLOCK, want))
            if not got:
                self.error = f"the reference run ended after {self.sent + length - want} bytes of its logits"
                return None
            self._write(dst, got, length - want)
            parts.append(got)
            want -= len(got)
        self.sent += length
        return b"".join(parts)

    def release(self, side: str) -> None:
        """The writer ("source") or the readers ("sinks") are gone, perhaps before they opened their pipes:
        opening a pipe's other end and closing it frees a relay waiting there, which then meets an end of
        file or a broken pipe and ends."""
        for _ in range(20):
            if not self._thread.is_alive():
                return
            paths = [(self.source, os.O_WRONLY)] if side == "source" else [(p, os.O_RDONLY) for p in self.sinks]
            for path, flags in paths:
                try:
                    os.close(os.open(path, flags | os.O_NONBLOCK))
                except OSError:
                    pass
            self._thread.join(0.05)

    def __exit__(self, *exc) -> None:
        for _ in range(50):
            if not self._thread.is_alive():
                break
            self.release("source")
            self.release("sinks")
        shutil.rmtree(self._dir, ignore_errors=True)


class _Stopped(Exception):
    """Reader `reader` stopped reading, `at` bytes into the block being copied."""

    def __init__(self, reader: int, at: int):
        super().__init__(reader, at)
        self.reader, self.at = reader, at
