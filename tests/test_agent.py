"""The box's side of `run --host` (the agent), on this machine: concurrent starts start one run, a follower
of the log replays nothing it was not asked for, a stopped run says so."""

import json
import subprocess
import sys
import time

from orchestrator.execute import agent


def _agent(*args, stdin="{}", **kw):
    return subprocess.Popen([sys.executable, "-m", "orchestrator.execute.agent", *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_starts_that_race_start_one_run_and_the_others_attach(tmp_path):
    rundir = tmp_path / "runs" / "raced"
    rundir.mkdir(parents=True)
    (rundir / "recipe.yaml").write_text("name: raced\nweights: [Q8_0]\n")  # its run ends at once: exit 2
    procs = [_agent("start", rundir) for _ in range(4)]
    outs = [json.loads(p.communicate("{}")[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(o["attached"] for o in outs) == [False, True, True, True]
    assert len({o["pid"] for o in outs}) == 1
    deadline = time.monotonic() + 60
    while agent.state(rundir)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    now = agent.state(rundir)
    assert now["state"] == "finished" and now["rc"] == 2
    assert (rundir / "run.log").read_text().count("--- quantsweep run started") == 1


def test_following_from_line_0_replays_no_earlier_run(tmp_path):
    rundir = tmp_path / "runs" / "again"
    rundir.mkdir(parents=True)
    (rundir / "run.log").write_text("--- quantsweep run started 2026-01-01T00:00:00Z\nan earlier run's line\n")
    sleeper = subprocess.Popen(["sleep", "30"])  # the run now: alive until we end it
    (rundir / "run.json").write_text(json.dumps({"pid": sleeper.pid, "started_at": "now", "token": "t"}))
    follower = _agent("logs", rundir, "-n", "0", "-f")
    time.sleep(1.0)
    with open(rundir / "run.log", "a") as f:
        f.write("this run's line\n")
    time.sleep(1.0)
    sleeper.kill()
    sleeper.wait()
    out, _ = follower.communicate(timeout=30)
    assert out == "this run's line\n"


def test_a_run_ended_by_stop_is_stopped_not_finished(tmp_path):
    rundir = tmp_path / "runs" / "halted"
    rundir.mkdir(parents=True)
    (rundir / "run.json").write_text(json.dumps({"pid": 1, "started_at": "s", "token": "a"}))
    (rundir / "exit.json").write_text(json.dumps({"rc": 143, "started_at": "s", "token": "a", "stopped": True}))
    assert agent.state(rundir)["state"] == "stopped"
    (rundir / "exit.json").write_text(json.dumps({"rc": 0, "started_at": "s", "token": "b"}))  # another start's end
    assert agent.state(rundir)["state"] == "running"  # pid 1 lives: the start of token a runs on
