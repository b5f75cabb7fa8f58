"""What a running sweep shows: plain lines off a terminal, a live table of the jobs in flight on one."""

import io

from rich.console import Console

from orchestrator.execute import progress
from orchestrator.plan.graph import Job

BASE, KLD1, KLD2 = Job("b", "base", "base logits"), Job("k1", "kld", "Q8_0 f16/f16"), Job("k2", "kld", "Q4_0 q8_0/q8_0")


def test_plain_lines_count_started_jobs_and_spread_the_eta_over_the_jobs_in_flight():
    out = io.StringIO()
    p = progress.make(3, stream=out, prior={"kld": 30.0})
    assert type(p) is progress.Progress  # a StringIO is no terminal
    with p:
        p.start(BASE)
        p.end(BASE, 12.0, True, [KLD1, KLD2])  # nothing of kind kld ended yet: the store's 30 s each
        p.start(KLD1, "GPU-0")
        p.start(KLD2, "GPU-1")
        p.end(KLD1, 10.0, False, [KLD2], note=": out of memory")  # now 10 s per KLD, one other in flight
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/3] base logits …"
    assert lines[1] == "    done base logits in 12.0s  (1/3, ETA 1m00s)"
    assert lines[2:4] == ["[2/3] Q8_0 f16/f16 …", "[3/3] Q4_0 q8_0/q8_0 on GPU-1 …"]
    assert lines[4] == "    FAILED Q8_0 f16/f16 in 10.0s: out of memory  (2/3, ETA 0m05s)"
    p.end(KLD2, 10.0, True, [Job("x", "bench", "bench Q8_0")])  # no bench timed yet, none in the store
    assert out.getvalue().splitlines()[-1].endswith("(3/3, ETA ~1m00s (guessed))")
    assert p.failed == 1 and not p.running


def test_quiet_prints_nothing_and_a_requeued_job_is_started_again():
    out = io.StringIO()
    p = progress.Progress(1, stream=out, quiet=True)
    p.start(KLD1, "GPU-0")
    p.requeue(KLD1, "re-queued")
    p.start(KLD1, "GPU-0")
    assert out.getvalue() == "" and p.started == 1 and list(p.running) == ["k1"]


def test_live_view_shows_each_running_job_with_its_device_and_the_counts():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    p = progress.LiveProgress(4, console=console, prior={"kld": 90.0})
    p.start(BASE, "GPU-0")
    p.end(BASE, 5.0, True, [KLD1, KLD2, BASE])
    p.start(KLD1, "GPU-0")
    p.start(KLD2, "GPU-1")
    console.print(p)
    text = buf.getvalue()
    assert "done base logits in 5.0s  (1/4" in text and "[2/4]" not in text  # ends scroll; starts are rows
    assert "1/4 done · 2 running · ETA" in text
    rows = [line.split() for line in text.splitlines() if "f16/f16" in line or "q8_0/q8_0" in line]
    assert rows[0][:3] == ["Q8_0", "f16/f16", "GPU-0"] and rows[0][-1] == "1m30s"  # expected: the store's 90 s
    assert rows[1][:3] == ["Q4_0", "q8_0/q8_0", "GPU-1"]


def test_live_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("QUANTSWEEP_PLAIN", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert isinstance(progress.make(1, stream=Tty()), progress.LiveProgress)
    assert type(progress.make(1, stream=Tty(), quiet=True)) is progress.Progress
    assert type(progress.make(0, stream=Tty())) is progress.Progress  # nothing to run: no empty live table
    monkeypatch.setenv("QUANTSWEEP_PLAIN", "1")
    assert type(progress.make(1, stream=Tty())) is progress.Progress


def test_the_live_header_is_one_line_with_or_without_jobs_running():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    p = progress.LiveProgress(3, console=console, prior={"kld": 90.0})
    p.start(BASE, "GPU-0")
    p.end(BASE, 5.0, True, [KLD1, KLD2])  # nothing runs now
    buf.truncate(0)
    buf.seek(0)
    console.print(p)
    assert buf.getvalue().strip().splitlines() == ["1/3 done · 0 running · ETA 3m00s"]
    p.start(KLD1, "GPU-0")
    buf.truncate(0)
    buf.seek(0)
    console.print(p)
    lines = buf.getvalue().strip().splitlines()
    assert lines[0] == "1/3 done · 1 running · ETA 3m00s" and lines[-1].split()[:3] == ["Q8_0", "f16/f16", "GPU-0"]

