"""llama-bench jsonl/json parsing, on outputs recorded from real runs."""

import json

import pytest

from orchestrator.errors import ToolFailed
from orchestrator.tools import bench as tb


def test_jsonl_rows_and_statistics_from_samples(fixture_text):
    rows = tb.judge(0, fixture_text("bench_jsonl.stdout"), "", 2)
    assert [r["test"] for r in rows] == ["pp32", "tg8"]
    recs = [json.loads(line) for line in fixture_text("bench_jsonl.stdout").splitlines()]
    for row, rec in zip(rows, recs):
        assert row["bench_type_k"] == "q8_0" and row["repetitions"] == 2
        ts = [1e9 * (rec["n_prompt"] + rec["n_gen"]) / s for s in rec["samples_ns"]]
        assert row["ts_mean"] == pytest.approx(sum(ts) / 2)
        assert row["ts_mean"] == pytest.approx(rec["avg_ts"], rel=1e-4)
        assert row["ts_std"] == pytest.approx(rec["stddev_ts"], rel=1e-3, abs=1e-6)


def test_stddev_recomputed_not_trusted():
    rec = {"n_prompt": 1, "n_gen": 0, "samples_ns": [2227501123, 23816364219], "stddev_ns": 3417393159}
    row = tb.summarize(rec)
    assert row["ns_std"] == pytest.approx(1.5265e10, rel=1e-3)


@pytest.mark.parametrize("name, reason", [
    ("bench_qv_no_fa", "context creation failed"),
    ("bench_json_partial", "context creation failed"),
])
def test_failures(fixture_text, name, reason):
    with pytest.raises(ToolFailed, match=reason):
        tb.judge(int(fixture_text(f"{name}.rc")), fixture_text(f"{name}.stdout"), fixture_text(f"{name}.stderr"), 2)


def test_partial_jsonl_is_a_failure(fixture_text):
    first = fixture_text("bench_jsonl.stdout").splitlines()[0]
    with pytest.raises(ToolFailed, match="1 of 2 tests"):
        tb.judge(1, first + "\n", "", 2)


def test_unterminated_json_array_is_read():
    text = '[\n  {"n_prompt": 16, "n_gen": 0, "samples_ns": [1000000000]},\n'
    assert tb.parse_records(text)[0]["n_prompt"] == 16


def test_test_names():
    assert tb.test_name(512, 0, 0) == "pp512" and tb.test_name(0, 128, 4096) == "tg128 @ d4096"
    assert tb.expected_tests(512, 128, [0, 4096]) == 4
