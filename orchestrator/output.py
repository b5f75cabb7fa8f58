"""The one output sink. Commands hand it their answer as data with the function that renders it as text;
it prints either the text or, with --json, the data itself, so every answer can be scripted. Answers go to
stdout; warnings and notes to stderr (a warning even with --quiet: something of ours was wrong).

The CLI makes one per command (`use`); code deeper down that must say something while it works (a file
made again, a download retried) asks `current()` rather than printing.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable

from orchestrator.errors import PipeClosed


class Output:
    def __init__(self, as_json: bool = False, quiet: bool = False, write: Callable[[str], Any] | None = None):
        self.as_json, self.quiet, self.write = as_json, quiet, write  # write: lines go there instead (tests)

    def __call__(self, line: str = "") -> None:
        """One line of a text answer."""
        if self.write is not None:
            self.write(line)
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:  # the reader (`| head`) has what it wanted
            raise PipeClosed() from None

    def answer(self, data: Any, render: Callable[[Any], Iterable[str]]) -> None:
        """The command's answer: `data` as JSON with --json, else the lines `render(data)` gives."""
        if self.as_json:
            self(json.dumps(data, indent=2, default=str))
        else:
            for line in render(data):
                self(line)

    def warn(self, msg: str) -> None:
        self.err(f"quantsweep: warning: {msg}")

    def err(self, msg: str) -> None:
        """A line on stderr, whatever the mode: what the user must see (a warning, a retry)."""
        print(msg, file=sys.stderr, flush=True)

    def note(self, msg: str) -> None:
        """What a command does while it works (a retry, a build step): on stderr, none with --quiet."""
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


_current = Output()


def use(out: Output) -> Output:
    global _current
    _current = out
    return out


def current() -> Output:
    return _current
