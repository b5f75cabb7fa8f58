"""A run of some of a reference-logits file's chunks, served through a named pipe: no copy on disk.

llama-perplexity reads its `--kl-divergence-base` file strictly in order (header, every chunk's tokens,
then each chunk's rows), so a pipe that carries a new header and the chosen chunks' tokens and rows is,
to it, a base file of just those chunks. One base made once therefore serves a recipe that asks for
fewer chunks, a pilot prefix, or a later segment, with the same numbers as a base made for them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from orchestrator.errors import ToolFailed
from orchestrator.tools import perplexity as tp

BLOCK = 8 << 20  # bytes copied at a time: the reader (the tool) paces the writer


class ServedChunks:
    """`with ServedChunks(base, first, count, folder) as path:` a pipe to hand the tool as its base file;
    after the tool ends, the writer is released (a reader that died early breaks the pipe) and the pipe
    removed. `error` says what went wrong on the writer's side, if anything."""

    def __init__(self, base: Path, first: int, count: int, folder: Path):
        header = tp.read_logits_header(base)
        if header is None:
            raise ToolFailed(f"{base.name}: not a base-logits file", machine=True)
        self.n_ctx, self.n_vocab, n_chunk = header
        if first < 0 or count < 1 or first + count > n_chunk:
            raise ToolFailed(f"{base.name} holds {n_chunk} chunks; chunks {first + 1}–{first + count} were asked")
        self.base, self.first, self.count, self.n_chunk = base, first, count, n_chunk
        self.folder = folder
        self.error: str | None = None
        self.sent = 0

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".served.", dir=self.folder))
        self.pipe = self._dir / f"chunks-{self.first + 1}-{self.first + self.count}.kld"
        os.mkfifo(self.pipe, 0o600)
        self._thread = threading.Thread(target=self._write, name="quantsweep-served-chunks", daemon=True)
        self._thread.start()
        return self.pipe

    def _write(self) -> None:
        try:
            with open(self.pipe, "wb") as out, open(self.base, "rb") as src:  # opens once the tool opens it
                out.write(tp.logits_header(self.n_ctx, self.n_vocab, self.count))
                self.sent += 20
                for offset, length in tp.logits_slices(self.n_ctx, self.n_vocab, self.n_chunk, self.first,
                                                       self.count):
                    src.seek(offset)
                    while length:
                        block = src.read(min(BLOCK, length))
                        if not block:
                            raise EOFError(f"{self.base.name} ends early")
                        out.write(block)
                        self.sent += len(block)
                        length -= len(block)
        except BrokenPipeError:
            self.error = f"the tool stopped reading after {self.sent} bytes"
        except (OSError, EOFError) as exc:
            self.error = f"serving chunks of {self.base.name}: {exc}"

    def __exit__(self, *exc) -> None:
        for _ in range(100):
            if not self._thread.is_alive():
                break
            # the tool ended without opening the pipe, or before reading all of it: opening and closing
            # the reading end releases a writer waiting to open, and breaks the pipe of one waiting to write
            try:
                os.close(os.open(self.pipe, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
            self._thread.join(0.1)
        shutil.rmtree(self._dir, ignore_errors=True)
