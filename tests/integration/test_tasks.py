"""Task accuracy on the real tools: HellaSwag, Winogrande and multiple-choice files (written by the tests in
the tools' formats) run on the reference and on every cell, each task's answer paired with the reference's;
a task file in the wrong format is refused before anything is written; a crashing task run is a failure row
and the sweep goes on."""

import pytest

from orchestrator.cli import main
from orchestrator.results.store import Store

from ..helpers import hellaswag_text, multiple_choice_bytes, small_recipe, winogrande_text

pytestmark = pytest.mark.integration

TASKS = """tasks:
  - {path: hs.txt, format: hellaswag, tasks: 20, ctx: 512}
  - {path: wg.csv, format: winogrande, ctx: 512}
  - {path: mc.bin, format: multiple-choice, name: choice, ctx: 512}
"""


def _recipe(tmp_path, model, name="tasks", tools_dir=None):
    (tmp_path / "hs.txt").write_text(hellaswag_text(24))
    (tmp_path / "wg.csv").write_text(winogrande_text(20))
    (tmp_path / "mc.bin").write_bytes(multiple_choice_bytes(18))
    path = small_recipe(tmp_path, model, name=name, bench=False)
    path.write_text(path.read_text() + TASKS)
    return path


def _right(stdout: str) -> list[bool]:
    """By hand, from a Winogrande log: each row ends with the option chosen and the answer."""
    rows = [line.split() for line in stdout.splitlines() if line[:1].isdigit()]
    return [r[-2] == r[-1] for r in rows]


def test_tasks_on_every_cell_paired_with_the_reference(tmp_path, tools, demo_model, capsys):
    ws = tmp_path / "ws"
    recipe = _recipe(tmp_path, demo_model)
    assert main(["plan", str(recipe), "-w", str(ws)]) == 0
    assert "task               15 jobs" in capsys.readouterr().out  # 3 sets × (reference + 4 cells)
    assert main(["run", str(recipe), "-w", str(ws), "-q"]) == 0
    df = Store(ws / "store.sqlite").results("tasks")
    t = df[df.measurement == "task"]
    assert len(t) == 15 and set(t.status) == {"ok"} and set(t.test) == {"hs", "wg", "choice"}
    assert set(t[t.test == "hs"].n_tasks) == {20} and set(t[t.test == "wg"].n_tasks) == {19}  # the tool drops
    ref = t[t.weights == "reference"].set_index("test")  # Winogrande's last row
    assert set(ref.type_k) == {"f16"} and (ref.accuracy == ref.n_right / ref.n_tasks).all()
    # the flips the report shows equal a count by hand from the two Winogrande logs
    q2 = t[(t.test == "wg") & (t.weights == "Q2_K") & (t.type_k == "f16")].iloc[0]
    mine, theirs = _right((ws / "logs" / ref.loc["wg"].job_key / "task.stdout").read_text()), \
        _right((ws / "logs" / q2.job_key / "task.stdout").read_text())
    lost, gained = sum(a and not b for a, b in zip(mine, theirs)), sum(b and not a for a, b in zip(mine, theirs))
    out = tmp_path / "report"
    assert main(["report", "tasks", "-w", str(ws), "--out", str(out)]) == 0
    import pandas as pd

    numbers = pd.read_csv(out / "tasks.csv")
    row = numbers[(numbers.task == "wg") & (numbers.weights == "Q2_K") & (numbers.type_k == "f16")].iloc[0]
    assert (row.right_to_wrong, row.wrong_to_right) == (lost, gained) and lost + gained > 0
    assert row.accuracy_delta == pytest.approx((sum(theirs) - sum(mine)) / len(mine))
    readme = (out / "README.md").read_text()
    assert "## Task accuracy, paired with the reference" in readme and "| wg | Q2_K | f16 | f16 | 19 |" in readme
    assert "![Task accuracy change vs KLD](accuracy_vs_kld.png)" in readme
    assert (out / "accuracy_vs_kld.png").read_bytes()[:4] == b"\x89PNG"
    assert "### Task accuracy" in (out / "model-card.md").read_text()
    # the Q8_0 cells answer as the reference does on the HellaSwag tasks: no change detected
    q8 = numbers[(numbers.task == "hs") & (numbers.weights == "Q8_0")]
    assert (q8.right_to_wrong + q8.wrong_to_right <= 1).all() and not q8.changed.any()
    # recommend keeps the cells that reach an accuracy on a task, and shows it beside each
    import json

    wg = numbers[(numbers.task == "wg") & (numbers.weights != "reference")]
    bound = sorted(wg.accuracy)[-1]
    capsys.readouterr()
    assert main(["recommend", "tasks", "-w", str(ws), "--vram", "2GiB", "--ctx", "1024", "--task", "wg",
                 "--min-accuracy", str(bound), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["cells"] and all(c["task_accuracy"] >= bound - 1e-9 for c in rec["cells"])
    assert len(rec["cells"]) == (wg.accuracy >= bound - 1e-9).sum() and "wg accuracy ≥" in rec["notes"][0]
    assert main(["recommend", "tasks", "-w", str(ws), "--vram", "2GiB", "--ctx", "1024",
                 "--min-accuracy", "0.5"]) == 2  # three tasks: which one is asked
    # a re-run runs nothing
    assert main(["run", str(recipe), "-w", str(ws), "-q"]) == 0
    assert Store(ws / "store.sqlite").runs().iloc[-1].n_jobs_run == 0


def test_a_task_file_in_the_wrong_format_is_refused_before_anything_is_written(tmp_path, demo_model, capsys):
    recipe = _recipe(tmp_path, demo_model)
    (tmp_path / "wg.csv").write_text(hellaswag_text(6))  # a HellaSwag file where a Winogrande CSV belongs
    ws = tmp_path / "ws"
    capsys.readouterr()
    assert main(["run", str(recipe), "-w", str(ws)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"quantsweep: error: {tmp_path / 'wg.csv'}: task wg (winogrande): line 1 has 1 columns, not 5 "
                   "(it looks like a HellaSwag file (6 lines a task))")
    assert not ws.exists()


def test_a_task_run_that_crashes_is_a_failure_row_and_the_sweep_goes_on(tmp_path, tools, demo_model):
    folder = tmp_path / "tools"
    folder.mkdir()
    for exe in tools.bin_dir.iterdir():
        if exe.name != "llama-perplexity":
            (folder / exe.name).symlink_to(exe)
    (folder / "llama-perplexity").write_text(f"""#!/bin/sh
for a in "$@"; do [ "$a" = --winogrande ] && exec timeout -s KILL 1 sleep 30; done
exec {tools.bin_dir / 'llama-perplexity'} "$@"
""")
    (folder / "llama-perplexity").chmod(0o755)
    recipe = _recipe(tmp_path, demo_model)
    ws = tmp_path / "ws"
    assert main(["run", str(recipe), "-w", str(ws), "-q", "--llama-cpp", str(folder)]) == 1
    df = Store(ws / "store.sqlite").results("tasks")
    t = df[df.measurement == "task"]
    assert set(t[t.test == "wg"].status) == {"failed"} and set(t[t.test != "wg"].status) == {"ok"}
    assert set(df[df.measurement == "kld"].status) == {"ok"}
    assert all(r.startswith("killed by SIGKILL") for r in t[t.test == "wg"].reason)


def test_generation_cells_part_from_the_reference(tmp_path, tools, demo_model, capsys):
    path = small_recipe(tmp_path, demo_model, name="says", bench=False)
    path.write_text(path.read_text() + "generate:\n  tokens: 16\n  prompts: ['Once upon a time, in a small village,',"
                    " {name: capital, text: The capital of France is}]\n")
    ws = tmp_path / "ws"
    assert main(["run", str(path), "-w", str(ws), "-q"]) == 0
    df = Store(ws / "store.sqlite").results("says")
    g = df[df.measurement == "generate"]
    assert len(g) == 10 and set(g.status) == {"ok"} and set(g.test) == {"p1", "capital"}
    assert (g.n_generated <= 16).all() and (g.generated_text.str.len() > 0).all()
    assert all(len(ids.split(",")) == n for ids, n in zip(g.generated_ids, g.n_generated))
    out = tmp_path / "report"
    assert main(["report", "says", "-w", str(ws), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert "## What each cell says" in readme and "| p1 | reference | f16 | f16 | reference |" in readme
    import pandas as pd

    said = pd.read_csv(out / "generations.csv")
    cells = said[said.weights != "reference"]
    assert len(cells) == 8 and cells.parts_at.between(0, 16).all()
    # a toolchain without llama-completion: refused in one line before any tool runs
    folder = tmp_path / "tools"
    folder.mkdir()
    for exe in tools.bin_dir.iterdir():
        if exe.name != "llama-completion":
            (folder / exe.name).symlink_to(exe)
    capsys.readouterr()
    assert main(["run", str(path), "-w", str(tmp_path / "ws2"), "--llama-cpp", str(folder)]) == 3
    assert "generate: needs llama-completion and llama-tokenize" in capsys.readouterr().err


def test_a_task_longer_than_its_ctx_is_refused_before_the_run(tmp_path, tools, demo_model, capsys):
    recipe = _recipe(tmp_path, demo_model)
    long = hellaswag_text(6).splitlines()
    long[6] = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # task 2's context
    (tmp_path / "hs.txt").write_text("\n".join(long) + "\n")
    recipe.write_text(recipe.read_text().replace("tasks: 20, ctx: 512", "ctx: 256"))
    ws = tmp_path / "ws"
    capsys.readouterr()
    assert main(["plan", str(recipe), "-w", str(ws)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"quantsweep: error: {recipe}: tasks[0].ctx: task 2 of hs.txt is about ")
    assert err.endswith("tokens with all its choices, more than ctx 256: llama-perplexity would score no task; "
                        "raise tasks[0].ctx") and not (ws / "store.sqlite").exists()
