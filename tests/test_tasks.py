"""Task accuracy: the task files' formats, each task's own result from the tool's running output (recorded
from real runs: tests/fixtures/0c1e570-cpu-gnu12/{hellaswag,winogrande}_{f16,q2_k}.*, see record.py --tasks),
and the pairing of a cell's answers with the reference's (flips, exact McNemar)."""

import re

import pytest

from orchestrator.errors import InputFileError, ToolFailed
from orchestrator.report.paired import mcnemar_exact, paired, wilson
from orchestrator.tools import tasks

from .helpers import BUILD, FIXTURES, hellaswag_text, multiple_choice_bytes, winogrande_text

RUNS = FIXTURES / BUILD


def _run(name):
    return [(RUNS / f"{name}.{p}").read_text() for p in ("stdout", "stderr")]


def _judged(fmt, model):
    out, err = _run(f"{'choice' if fmt == 'multiple-choice' else fmt}_{model}")
    return tasks.judge(fmt, 0, out, err, 40 if fmt == "hellaswag" else None)



def test_winogrande_flips_equal_a_count_by_hand_from_the_two_logs():
    ref, cell = _judged("winogrande", "f16"), _judged("winogrande", "q2_k")
    # the tool's CSV reader drops the file's last row: 39 of the 40 tasks written, as it says it loaded
    assert ref["n_tasks"] == cell["n_tasks"] == 39

    def right(model):  # by hand: the last two columns of each row are the chosen option and the answer
        rows = [line.split() for line in _run(f"winogrande_{model}")[0].splitlines() if line.strip()]
        return [r[-2] == r[-1] for r in rows]

    a, b = right("f16"), right("q2_k")
    lost, gained = sum(x and not y for x, y in zip(a, b)), sum(y and not x for x, y in zip(a, b))
    got = paired(ref["task_outcomes"], cell["task_outcomes"])
    assert (got.right_to_wrong, got.wrong_to_right) == (lost, gained) == (9, 0)
    assert ref["n_right"] == sum(a) == 19 and cell["n_right"] == sum(b) == 10
    assert got.p == pytest.approx(2 / 2 ** 9) and got.changed  # 9 of 9 discordant tasks one way


def test_hellaswag_task_results_come_from_the_running_accuracy():
    ref, cell = _judged("hellaswag", "f16"), _judged("hellaswag", "q2_k")
    assert ref["n_tasks"] == 40 and ref["n_right"] == 37 and ref["task_outcomes"][12] == "0"
    got = paired(ref["task_outcomes"], cell["task_outcomes"])
    assert (got.right_to_wrong, got.wrong_to_right, got.p, got.changed) == (0, 0, 1.0, False)
    # our interval is the one the tool prints, row by row
    for k, acc, lo, hi in tasks.HELLASWAG_ROW.findall(_run("hellaswag_f16")[0]):
        right = round(float(acc) / 100 * int(k))
        assert [round(x * 100, 4) for x in wilson(right, int(k))] == [float(lo), float(hi)]


def test_multiple_choice_task_results_agree_with_its_final_result():
    ref, cell = _judged("multiple-choice", "f16"), _judged("multiple-choice", "q2_k")
    for name, got in (("f16", ref), ("q2_k", cell)):
        final = re.search(r"Final result: ([\d.]+) \+/- ([\d.]+)", _run(f"choice_{name}")[1])
        assert got["n_tasks"] == 24 and round(100 * got["accuracy"], 4) == float(final.group(1))
    got = paired(ref["task_outcomes"], cell["task_outcomes"])
    # 4 answers gained, none lost: p = 2 · 2⁻⁴, no change detected at 5 %
    assert (got.right_to_wrong, got.wrong_to_right, got.p, got.changed) == (0, 4, 0.125, False)


def test_a_run_that_stops_short_is_a_failure():
    out, err = _run("hellaswag_f16")
    cut = "\n".join(out.splitlines()[:20])
    with pytest.raises(ToolFailed, match=r"hellaswag: \d+ of 40 tasks scored"):
        tasks.judge("hellaswag", 0, cut, err, 40)
    with pytest.raises(ToolFailed, match="skips or repeats"):
        tasks.outcomes("hellaswag", out.replace("\n7\t", "\n8\t", 1))


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(23, 3) == pytest.approx(2 * sum(__import__("math").comb(26, i) for i in range(4)) / 2 ** 26)
    assert mcnemar_exact(1, 5) == mcnemar_exact(5, 1) == pytest.approx(0.21875)


@pytest.mark.parametrize("fmt, text, problem", [
    ("hellaswag", hellaswag_text(4), None),
    ("winogrande", winogrande_text(6), None),
    ("winogrande", hellaswag_text(4), "line 1 has 1 columns, not 5 (it looks like a HellaSwag file"),
    ("hellaswag", winogrande_text(6), "7 lines, not a multiple of 6 (a task is a context, the gold ending's index "
                                      "0-3 and four endings); it looks like a Winogrande CSV"),
    ("hellaswag", hellaswag_text(4)[:-40], "23 lines, not a multiple of 6"),
    ("hellaswag", hellaswag_text(2).replace("\n1\n", "\nB\n"), "task 2 (line 8): the gold ending's index is 'B'"),
    ("winogrande", winogrande_text(3).replace(",trophy,suitcase,1", ",trophy,1"), "line 2 has 4 columns, not 5"),
    ("winogrande", winogrande_text(3).replace(",1\n", ",3\n"), "line 2: the answer is '3', not 1 or 2"),
    ("winogrande", "", "the file is empty"),
    ("multiple-choice", multiple_choice_bytes(5), None),
    ("multiple-choice", multiple_choice_bytes(5)[:-30], "task 5 of 5: it ends past the end of the file"),
    ("multiple-choice", hellaswag_text(4), "its header says"),
    ("hellaswag", multiple_choice_bytes(5), "not text (a multiple-choice binary? give format: multiple-choice)"),
])
def test_a_task_file_in_the_wrong_format_is_named_with_what_is_wrong(tmp_path, fmt, text, problem):
    path = tmp_path / "tasks.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if problem is None:
        assert tasks.check_file(path, fmt, "mine") == {"hellaswag": 4, "winogrande": 6, "multiple-choice": 5}[fmt]
        return
    with pytest.raises(InputFileError) as e:
        tasks.check_file(path, fmt, "mine")
    assert str(e.value).startswith(f"{path}: task mine ({fmt}): {problem}") and "\n" not in str(e.value)


def _imported(tmp_path, *logs):
    from orchestrator.cli import main

    ws = tmp_path / "ws"
    for name, weights, task in logs:
        assert main(["import", str(RUNS / name), "-w", str(ws), "--name", "hand", "--weights", weights,
                     "--task", task]) == 0
    return ws


def test_task_logs_made_by_hand_are_imported_and_paired(tmp_path, capsys):
    from orchestrator.cli import main

    assert [tasks.detect(_run(n)[0]) for n in ("hellaswag_f16", "winogrande_f16", "choice_f16", "ppl_kld")] == \
        ["hellaswag", "winogrande", "multiple-choice", None]
    ws = _imported(tmp_path, ("winogrande_f16.stdout", "reference", "wg"), ("winogrande_q2_k.stdout", "Q2_K", "wg"),
                   ("choice_f16.stdout", "reference", "mmlu-like"), ("choice_q2_k.stdout", "Q2_K", "mmlu-like"))
    out = tmp_path / "report"
    assert main(["report", "hand", "-w", str(ws), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert "| wg | Q2_K | f16 | f16 | 39 | 25.64 % [14.6, 41.1] | -23.08 pp | 9 | 0 | 0.00391 | changed |" in readme
    assert "| mmlu-like | Q2_K | f16 | f16 | 24 | 50.00 % [31.4, 68.6] | +16.67 pp | 0 | 4 | 0.125 | no change " \
           "detected |" in readme
    # a log that holds no task is refused, naming it
    bad = tmp_path / "cut.txt"
    bad.write_text("hellaswag_score : loaded 24 tasks from prompt.\n\ntask\tacc_norm\t95% confidence interval\n")
    capsys.readouterr()
    assert main(["import", str(bad), "-w", str(ws), "--name", "hand"]) == 2
    assert "hellaswag: no task scored in the log; nothing imported" in capsys.readouterr().err


def test_compare_pairs_task_answers_of_two_runs(tmp_path, capsys):
    import json

    from orchestrator.cli import main

    ws = _imported(tmp_path, ("winogrande_f16.stdout", "reference", "wg"), ("winogrande_q2_k.stdout", "Q2_K", "wg"))
    _imported(tmp_path, ("winogrande_q2_k.stdout", "reference", "wg"), ("winogrande_f16.stdout", "Q2_K", "wg"))
    # (the second import replaced the first: the same rows with the models swapped, as another run would be)
    assert main(["import", str(RUNS / "winogrande_f16.stdout"), "-w", str(ws), "--name", "other", "--weights",
                 "Q2_K", "--task", "wg"]) == 0
    capsys.readouterr()
    assert main(["compare", "hand", "other", "-w", str(ws), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["tasks"]
    assert got == [{"task": "wg", "weights": "Q2_K", "type_k": "f16", "type_v": "f16", "accuracy_a": 19 / 39,
                    "accuracy_b": 19 / 39, "accuracy_delta": 0.0, "right_to_wrong": 0, "wrong_to_right": 0, "p": 1.0,
                    "changed": False}]


def test_a_generation_is_read_as_text_and_tokens_and_where_two_part():
    from orchestrator import procs
    from orchestrator.tools import generate

    def said(model):
        rc, out, err = int((RUNS / f"generate_{model}.rc").read_text()), *_run(f"generate_{model}")
        then = procs.ProcResult((), 0, _run(f"generate_{model}_tokens")[0], "", 0.1, False)
        return generate.judge(rc, out, err, then, 24)

    ref, cell = said("f16"), said("q2_k")
    assert ref["generated_text"] == " there was a wise old wizard named Elwes. Elwes was known for his magical " \
                                    "abilities and his love" and not ref["ended"]
    assert ref["n_generated"] == 24 and len(ref["generated_ids"].split(",")) == 24  # the tool's "\n\n" cut
    # " there" alike, then " was" against " lived": they part at token 1
    assert generate.parting(ref["generated_ids"], cell["generated_ids"], 24) == 1
    assert generate.parting(ref["generated_ids"], ref["generated_ids"], 24) == 24
    assert generate.continuation(" Paris. [end of text]\n\n\n") == (" Paris.", True)  # as the tool ends it
    with pytest.raises(ToolFailed, match="could not be tokenized"):
        generate.judge(0, " Paris.\n\n", "", None, 24)
    with pytest.raises(ToolFailed, match="model failed to load"):
        generate.judge(1, "", "llama_model_load: error loading model: bad magic", None, 24)


def test_the_longest_task_of_each_format_is_the_text_the_tool_holds_at_once(tmp_path):
    hs, wg, mc = tmp_path / "h.txt", tmp_path / "w.csv", tmp_path / "m.bin"
    hs.write_text(hellaswag_text(4))
    wg.write_text(winogrande_text(6))
    mc.write_bytes(multiple_choice_bytes(3))
    n, text = tasks.longest_task(hs, "hellaswag")
    lines = hellaswag_text(4).splitlines()
    assert text == " ".join([lines[6 * (n - 1)], *lines[6 * (n - 1) + 2:6 * n]])  # context and four endings
    n, text = tasks.longest_task(wg, "winogrande")
    assert text.count("councilmen refused the demonstrators") == 2 and "_" not in text  # both options filled
    assert tasks.longest_task(mc, "multiple-choice") == (3, "What color is the sky on a clear day? Green Red Blue "
                                                            "Yellow")
