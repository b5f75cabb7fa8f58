"""import -> store -> export/report, on logs recorded from real runs."""

import io
import json

import pandas as pd

from orchestrator.cli import main
from orchestrator.results.store import Store

from .helpers import BUILD, FIXTURES


def _combined_log(tmp_path):
    """What a user gets from `llama-perplexity ... > run.log 2>&1`: both streams, with log prefixes."""
    d = FIXTURES / BUILD
    log = tmp_path / "Q4_K_M.log"
    log.write_text((d / "ppl_kld.stderr").read_text() + (d / "ppl_kld.stdout").read_text())
    return log


def test_import_kld_log_and_bench_jsonl(tmp_path, capsys):
    ws = tmp_path / "ws"
    bench = FIXTURES / BUILD / "bench_jsonl.stdout"
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(bench.read_text())
    assert main(["import", str(_combined_log(tmp_path)), str(jsonl), "--workspace", str(ws),
                 "--name", "byhand", "--ctk", "q8_0", "--ctv", "q8_0"]) == 0
    assert "imported 3 rows" in capsys.readouterr().out
    df = Store(ws / "store.sqlite").results("byhand")
    kld = df[df.measurement == "kld"].iloc[0]
    assert (kld.weights, kld.type_k, kld.kld_mean, kld.same_top, kld.ctx) == ("Q4_K_M", "q8_0", 0.05344, 88.889, 128)
    assert sorted(df[df.measurement == "bench"].test) == ["pp32", "tg8"]


def test_import_noprefix_log_reads_cache_types(tmp_path):
    d = FIXTURES / BUILD
    log = tmp_path / "run.log"
    log.write_text((d / "ppl_kld_noprefix.stderr").read_text() + (d / "ppl_kld_noprefix.stdout").read_text())
    assert main(["import", str(log), "--workspace", str(tmp_path / "ws")]) == 0
    row = Store(tmp_path / "ws" / "store.sqlite").results("imported").iloc[0]
    assert (row.type_k, row.type_v, row.weights) == ("f16", "f16", "run")


def test_import_rejects_what_it_cannot_read(tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert main(["import", str(junk), "--workspace", str(tmp_path / "ws")]) == 2
    assert "neither llama-perplexity output" in capsys.readouterr().err


def test_export_formats_round_trip(tmp_path, capsys):
    ws = tmp_path / "ws"
    main(["import", str(_combined_log(tmp_path)), "--workspace", str(ws), "--name", "x"])
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["kld_mean"] == 0.05344 and rows[0]["dp_p99_9"] == 18.256
    assert main(["export", "--workspace", str(ws), "--format", "csv"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).kld_p99.iloc[0] == 0.215509
    out = tmp_path / "rows.parquet"
    assert main(["export", "--workspace", str(ws), "--format", "parquet", "-o", str(out)]) == 0
    assert pd.read_parquet(out).same_top_err.iloc[0] == 1.984
    assert main(["export", "--workspace", str(ws), "--format", "xml"]) == 2


def test_report_from_the_store_alone(tmp_path, capsys):
    ws = tmp_path / "ws"
    main(["import", str(_combined_log(tmp_path)), "--workspace", str(ws), "--name", "x"])
    out = tmp_path / "rep"
    assert main(["report", "x", "--workspace", str(ws), "--out", str(out)]) == 0
    md = (out / "README.md").read_text()
    assert "| Q4_K_M | f16 | f16 | 0.053440 ± 0.002969 | 13.9432 ± 2.5460 |" in md
    stats = pd.read_csv(out / "stats.csv").set_index("Statistic")
    assert stats.loc["KLD 99.9%", "Q4_K_M"] == "0.281977"
    assert stats.loc["Same top p", "Q4_K_M"] == "88.889 ± 1.984 %"
    assert main(["report", "nothing", "--workspace", str(ws)]) == 2


def test_import_plain_ppl_log(tmp_path):
    d = FIXTURES / BUILD
    log = tmp_path / "F16.log"
    log.write_text((d / "ppl_base.stdout").read_text() + (d / "ppl_base.stderr").read_text())
    assert main(["import", str(log), "--workspace", str(tmp_path / "ws"), "--name", "ppl"]) == 0
    row = Store(tmp_path / "ws" / "store.sqlite").results("ppl").iloc[0]
    assert (row.measurement, row.ppl_q, row.ppl_q_err, row.weights) == ("ppl", 13.27, 2.36883, "F16")


def test_import_log_jsonl_stream(tmp_path):
    """--log-jsonl puts every record on stdout; the output text is rebuilt from the level-none records."""
    log = tmp_path / "Q4_K_M.jsonl"
    log.write_text((FIXTURES / BUILD / "ppl_kld_jsonl.stdout").read_text())
    assert main(["import", str(log), "--workspace", str(tmp_path / "ws"), "--name", "j"]) == 0
    row = Store(tmp_path / "ws" / "store.sqlite").results("j").iloc[0]
    assert (row.measurement, row.kld_mean, row.kld_mean_err, row.ctx) == ("kld", 0.055155, 0.002972, 128)
    assert (row.type_k, row.type_v) == ("f16", "f16")
