"""What a cell says: llama-completion's greedy continuation of a prompt (temperature 0: the most likely token
each step; a fixed seed, no conversation template), then llama-tokenize on that output, so that two cells'
continuations are compared token by token.

llama-completion prints the continuation to stdout (without the prompt: --no-display-prompt) and ends it with
"\\n\\n", after " [end of text]\\n" when the model ended it; both are the tool's, not the model's, and are cut.
"""

from __future__ import annotations

import ast
import re

from orchestrator.errors import ToolFailed
from orchestrator.tools import first_failure, tail, threads_args

END_OF_TEXT = " [end of text]"
IDS_RE = re.compile(r"^\[[\d,\s]*\]\s*$", re.M)
PERF_RE = re.compile(r"eval time = .*?/\s*(\d+) (?:runs|tokens)")
FAILURES = [(re.compile(r"failed to load model|error loading model"), "model failed to load"),
            (re.compile(r"failed to create context|llama_init_from_model: failed"), "context creation failed"),
            (re.compile(r"out of memory|failed to allocate"), "out of memory")]


def argv(exe, model, prompt: str, *, tokens: int, ctx: int, cache_k: str, cache_v: str, flash_attn: str,
         gpu_layers: int, threads: int | None, extra: list[str]) -> list:
    return [exe, "-m", model, "-p", prompt, "-n", str(tokens), "--temp", "0", "--seed", "0", "-no-cnv",
            "--no-display-prompt", "-c", str(ctx), "-ctk", cache_k, "-ctv", cache_v, "-fa", flash_attn,
            "-ngl", str(gpu_layers), *threads_args(threads), *extra]


def tokenize_argv(exe, model, text_file) -> list:
    return [exe, "-m", model, "-f", text_file, "--ids", "--no-bos", "--no-parse-special", "--log-disable"]


def continuation(stdout: str) -> tuple[str, bool]:
    """The model's text, and whether it ended it (end of text) before the token limit."""
    text = stdout[:-2] if stdout.endswith("\n\n") else stdout
    for mark in (END_OF_TEXT + "\n", END_OF_TEXT):
        if text.endswith(mark):
            return text[:-len(mark)], True
    return text, False


def judge(rc: int, stdout: str, stderr: str, then, tokens: int) -> dict:
    """A generation succeeded when the tool exited 0 having generated, and its output was tokenized."""
    reason = first_failure(stderr, FAILURES)
    if rc != 0 or reason:
        raise ToolFailed(reason or f"exit code {rc}", stderr_tail=tail(stderr))
    text, ended = continuation(stdout)
    if not text and not ended:
        raise ToolFailed("no text generated", stderr_tail=tail(stderr))
    found = IDS_RE.search(then.stdout) if then is not None and then.rc == 0 else None
    if found is None:
        raise ToolFailed("its output could not be tokenized (llama-tokenize)",
                         stderr_tail=tail(then.stderr if then is not None else stderr))
    ids = ast.literal_eval(found.group(0).strip())
    # the tool's own "\n\n" (and " [end of text]") were tokenized with the text: only the tokens it generated
    # count, at most the limit
    return {"generated_text": text, "generated_ids": ",".join(map(str, ids[:tokens])), "ended": ended,
            "n_generated": min(len(ids), tokens)}


def parting(a: str, b: str, limit: int) -> int:
    """The first token at which two continuations (comma-separated ids) differ: 0 at once, `limit` never."""
    x, y = a.split(",") if a else [], b.split(",") if b else []
    for i, (p, q) in enumerate(zip(x, y)):
        if p != q:
            return i
    return limit if len(x) == len(y) else min(len(x), len(y))
