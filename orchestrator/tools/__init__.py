"""One module per llama.cpp tool: its argv builder, its output parser and its success judge.

Everything here is a pure function of text and arguments, so it is tested on outputs recorded
from real runs (tests/fixtures/<build>/). Success is judged from the output, never from rc alone.
"""

# a file an argv names: a path or a string here, or a placeholder the worker resolves where the job runs
File = object

NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def threads_args(threads: int | None) -> list[str]:
    return ["-t", str(threads)] if threads else []


def first_failure(text: str, table) -> str | None:
    """The reason for the first known failure message in `text` ((pattern, reason) pairs)."""
    for pattern, reason in table:
        m = pattern.search(text)
        if m:
            return f"{reason}: {m.group(0).strip()[:200]}"
    return None
