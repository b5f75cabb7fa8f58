"""One module per llama.cpp tool: its argv builder, its output parser and its success judge.

Everything here is a pure function of text and arguments, so it is tested on outputs recorded
from real runs (tests/fixtures/<build>/). Success is judged from the output, never from rc alone.
"""

NUM = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def threads_args(threads: int | None) -> list[str]:
    return ["-t", str(threads)] if threads else []
