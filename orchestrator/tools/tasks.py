"""llama-perplexity's task modes: the task files' formats (checked before any tool runs) and each task's own
result, read from the tool's running output.

- HellaSwag (`--hellaswag`): 6 lines a task — context, the gold ending's index (0–3), four endings. The tool
  prints a running table `task<TAB>acc_norm%<TAB>[lo%, hi%]` and no final line: the last row is the score. A
  task's own result is the change of the running accuracy at its row (k·acc_k − (k−1)·acc_{k−1} is 1 or 0).
- Winogrande (`--winogrande`): CSV `index,sentence (one _),option1,option2,answer (1|2)`, with or without a
  header row (the tool skips a row without a `_`). The tool prints one row a task: `k<TAB>acc%<TAB>score1
  score2 chosen answer`; the task is right when chosen == answer.
- Multiple choice (`--multiple-choice -bf FILE`; MMLU, ARC, TruthfulQA as llama.cpp's users convert them):
  binary, `u32 n_task`, `u32 offset[n_task]`, then per task a string (the question) and two answer blocks
  (`u32 n ≤ 100`, n strings, `i32 label[n]`; the first block is scored); a string is `u32 len` + bytes. The
  tool prints a running table `task<TAB>acc_norm` (no interval) and `Final result: x +/- y` to its log.

Tasks are drawn in a fixed order (mt19937 seeded 1), the same for every model given the same file and task
count: task k of two runs is the same task, so two models are compared task by task.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from orchestrator.errors import InputFileError, ToolFailed
from orchestrator.tools import NUM

FORMATS = ("hellaswag", "winogrande", "multiple-choice")
HELLASWAG_ROW = re.compile(rf"^(\d+)\t({NUM})%\t\[({NUM})%, ({NUM})%\]\s*$", re.M)
CHOICE_ROW = re.compile(rf"^(\d+)\t({NUM})\s*$", re.M)
WINOGRANDE_ROW = re.compile(rf"^(\d+)\t({NUM})\t\s*({NUM})\s+({NUM})\s+([12])\s+([12])\s*$", re.M)


def check_file(path: Path, fmt: str, task: str) -> int:
    """The number of tasks in `path`, read as `fmt`; InputFileError naming the file, the task and what is
    wrong (a HellaSwag file given as Winogrande, a truncated file…) before any tool runs."""
    if fmt == "multiple-choice":
        try:
            problem, n = _multiple_choice(path.read_bytes())
        except OSError as exc:
            raise InputFileError(f"{path}: task {task} ({fmt}): cannot be read: {exc}") from None
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputFileError(f"{path}: task {task} ({fmt}): not text (a multiple-choice binary? "
                                 "give format: multiple-choice)") from None
        except OSError as exc:
            raise InputFileError(f"{path}: task {task} ({fmt}): cannot be read: {exc}") from None
        problem, n = (_hellaswag if fmt == "hellaswag" else _winogrande)(text)
    if problem:
        raise InputFileError(f"{path}: task {task} ({fmt}): {problem}")
    return n


def _hellaswag(text: str) -> tuple[str | None, int]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return "the file is empty", 0
    if len(lines) % 6:
        return (f"{len(lines)} lines, not a multiple of 6 (a task is a context, the gold ending's index 0-3 and "
                "four endings)" + ("; it looks like a Winogrande CSV" if _looks_winogrande(lines) else "")), 0
    for t in range(len(lines) // 6):
        gold = lines[6 * t + 1].strip()
        if gold not in ("0", "1", "2", "3"):
            return f"task {t + 1} (line {6 * t + 2}): the gold ending's index is {gold[:30]!r}, not 0-3", 0
    return None, len(lines) // 6


def _looks_winogrande(lines: list[str]) -> bool:
    return "_" in lines[0] or lines[0].startswith("index,") or lines[0].count(",") >= 4


def _winogrande(text: str) -> tuple[str | None, int]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        return "the file is empty", 0
    n = 0
    for i, row in enumerate(rows, 1):
        if len(row) != 5:
            what = "it looks like a HellaSwag file (6 lines a task)" if len(row) == 1 else \
                "index,sentence,option1,option2,answer"
            return f"line {i} has {len(row)} columns, not 5 ({what})", 0
        if "_" not in row[1]:
            if i == 1:
                continue  # a header row: the tool skips it too
            return f"line {i}: the sentence has no _ (the blank an option fills)", 0
        if row[4].strip() not in ("1", "2"):
            return f"line {i}: the answer is {row[4].strip()[:30]!r}, not 1 or 2", 0
        n += 1
    return (None, n) if n else ("no task in it", 0)


def _multiple_choice(data: bytes) -> tuple[str | None, int]:
    import struct

    if len(data) < 4:
        return "the file is empty or cut short (no task count)", 0
    (n,) = struct.unpack_from("<I", data)
    if n == 0 or 4 + 4 * n > len(data):
        return (f"its header says {n} tasks, which {'is none' if n == 0 else 'do not fit its ' + str(len(data))}"
                f"{'' if n == 0 else ' bytes'} (a text file given as multiple-choice?)"), 0
    offsets = struct.unpack_from(f"<{n}I", data, 4)
    for t, at in enumerate(offsets):
        problem = _choice_problem(data, at, 4 + 4 * n)
        if problem:
            return f"task {t + 1} of {n}: {problem} (byte {at}; the file is {len(data)} bytes: truncated?)", 0
    return None, n


def _choice_problem(data: bytes, at: int, first: int) -> str | None:
    """What is wrong with the multiple-choice task at byte `at`, or None."""
    import struct

    if not first <= at < len(data):
        return "its offset is outside the file"
    try:
        (size,) = struct.unpack_from("<I", data, at)
        at += 4 + size
        for _ in range(2):  # the two answer blocks
            (k,) = struct.unpack_from("<I", data, at)
            if k > 100:
                return f"{k} answers (at most 100)"
            at += 4
            for _ in range(k):
                (size,) = struct.unpack_from("<I", data, at)
                at += 4 + size
            at += 4 * k
            if at > len(data):
                raise struct.error
    except struct.error:
        return "it ends past the end of the file"
    return None


def argv(exe, model, file, fmt: str, *, tasks: int | None, ctx: int, batch: int, ubatch: int, cache_k: str,
         cache_v: str, flash_attn: str, gpu_layers: int, threads: int | None, extra: list[str]) -> list:
    """A task run: the mode's flags, its file (-f, or -bf for the binary), the tasks asked (all: none), and
    a unified K/V cache (-kvu) so that the mode's parallel sequences fit whatever -np the build defaults to."""
    from orchestrator.tools import threads_args

    mode = {"hellaswag": ["-f", file, "--hellaswag"], "winogrande": ["-f", file, "--winogrande"],
            "multiple-choice": ["-bf", file, "--multiple-choice"]}[fmt]
    count = [f"--{fmt}-tasks", str(tasks)] if tasks else []
    return [exe, "-m", model, *mode, *count, "-c", str(ctx), "-b", str(batch), "-ub", str(ubatch), "-kvu",
            "-ctk", cache_k, "-ctv", cache_v, "-fa", flash_attn, "-ngl", str(gpu_layers), *threads_args(threads),
            *extra]


def outcomes(fmt: str, stdout: str) -> list[bool]:
    """Each task's result, in the order the tool drew them (True: right)."""
    out: list[bool] = []
    if fmt in ("hellaswag", "multiple-choice"):
        rows = (HELLASWAG_ROW if fmt == "hellaswag" else CHOICE_ROW).findall(stdout)
        right = 0
        for k, acc, *_ in rows:
            now = round(float(acc) / 100 * int(k))  # the tasks right so far
            out.append(now > right)
            right = now
    else:
        rows = WINOGRANDE_ROW.findall(stdout)
        out = [chosen == answer for *_, chosen, answer in rows]
    if [int(r[0]) for r in rows] != list(range(1, len(rows) + 1)):
        raise ToolFailed(f"{fmt}: the running table skips or repeats a task")
    return out


LOADED_RE = re.compile(r"(?:hellaswag_score|winogrande_score) ?: loaded (\d+) tasks|"
                       r"multiple_choice_score ?: there are (\d+) tasks")


def judge(fmt: str, rc: int, stdout: str, stderr: str, asked: int | None) -> dict:
    """A task run is done when its table has a row for every task it drew: `asked`, or every task the tool
    loaded when it asks none or more (the tool prints no final line for HellaSwag, and none for fewer than
    100 Winogrande tasks: the rows are the result; its CSV reader also drops a file's last row)."""
    got = outcomes(fmt, stdout)
    m = LOADED_RE.search(stderr + stdout)
    loaded = int(m.group(1) or m.group(2)) if m else None
    n_tasks = min(asked or loaded, loaded) if loaded else asked or -1
    if rc != 0 or len(got) != n_tasks:
        from orchestrator.tools.perplexity import failure_reason

        why = failure_reason(stderr) or f"exit code {rc}"
        raise ToolFailed(f"{fmt}: {len(got)} of {n_tasks} tasks scored ({why})", stderr_tail=stderr[-2000:])
    right = sum(got)
    return {"task_format": fmt, "n_tasks": len(got), "n_right": right, "accuracy": right / len(got),
            "task_outcomes": "".join("1" if r else "0" for r in got)}


def detect(text: str) -> str | None:
    """The task mode a llama-perplexity log was made in (its stdout, or both streams), or None."""
    if "hellaswag_score" in text or HELLASWAG_ROW.search(text):
        return "hellaswag"
    if "winogrande_score" in text or WINOGRANDE_ROW.search(text):
        return "winogrande"
    if "multiple_choice_score" in text or (re.search(r"^task\tacc_norm\s*$", text, re.M) and CHOICE_ROW.search(text)):
        return "multiple-choice"
    return None


def from_log(fmt: str, text: str) -> dict:
    """A task log made by hand: every task its table holds (ToolFailed if it holds none)."""
    got = outcomes(fmt, text)
    if not got:
        raise ToolFailed(f"{fmt}: no task scored in the log")
    return {"task_format": fmt, "n_tasks": len(got), "n_right": sum(got), "accuracy": sum(got) / len(got),
            "task_outcomes": "".join("1" if r else "0" for r in got)}


def longest_task(path: Path, fmt: str) -> tuple[int, str]:
    """The task of the file whose text the tool holds at once is longest (by bytes): its number (from 1) and
    that text — a HellaSwag task's context and its four endings, a Winogrande sentence with each option, a
    multiple-choice question and its answers. Its tokens, against ctx, tell whether every task fits."""
    import struct

    texts: list[str] = []
    if fmt == "hellaswag":
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [" ".join([lines[i], *lines[i + 2:i + 6]]) for i in range(0, len(lines) - 5, 6)]
    elif fmt == "winogrande":
        rows = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"))) if len(r) == 5 and "_" in r[1]]
        texts = [" ".join([r[1].replace("_", r[2]), r[1].replace("_", r[3])]) for r in rows]
    else:
        data = path.read_bytes()
        (n,) = struct.unpack_from("<I", data)
        for at in struct.unpack_from(f"<{n}I", data, 4):
            parts = []
            (size,) = struct.unpack_from("<I", data, at)
            parts.append(data[at + 4:at + 4 + size].decode("utf-8", "replace"))
            at += 4 + size
            (k,) = struct.unpack_from("<I", data, at)
            at += 4
            for _ in range(k):
                (size,) = struct.unpack_from("<I", data, at)
                parts.append(data[at + 4:at + 4 + size].decode("utf-8", "replace"))
                at += 4 + size
            texts.append(" ".join(parts))
    i = max(range(len(texts)), key=lambda j: len(texts[j].encode()))
    return i + 1, texts[i]
