import json

import pytest

from orchestrator.cli import main


def test_usage_errors_exit_2_without_traceback(capsys):
    assert main(["run"]) == 2
    assert main(["run", "x.yaml", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "Missing argument" in err and "No such option: --bogus" in err and "Traceback" not in err


def test_schema_is_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"model", "weights", "cache", "evaluation", "bench"} <= set(schema["properties"])


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "demo", "--workspace", str(tmp_path / "none")]) == 2
    assert "no store in" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("quantsweep ")


@pytest.mark.parametrize("args, message", [
    (["memory", "nope.gguf"], "nope.gguf: no such file"),
    (["recommend", "demo", "--vram", "lots", "--ctx", "100"], "--vram 'lots'"),
    (["recommend", "demo", "--vram", "1GiB", "--ctx", "soon"], "--ctx 'soon'"),
    (["recommend", "demo", "--vram", "1GiB"], "give --ctx N (or --ctx max), --max-kld X, or both"),
    (["recommend", "demo", "--vram", "0.4GiB", "--ctx", "100", "--reserve", "0.75GiB"],
     "--reserve 0.75GiB leaves nothing"),
    (["compare", "a", "b"], "no store in"),
])
def test_answer_commands_reject_bad_input(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_export_parquet_refuses_a_terminal(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["export", "--format", "parquet", "--workspace", str(tmp_path)]) == 2
    assert "--format parquet is binary: give -o FILE" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert main(["export", "--format", "parquet", "--workspace", str(tmp_path)]) == 2  # no store: past the check
    assert "no store in" in capsys.readouterr().err


def test_python_dash_m_orchestrator_is_the_quantsweep_command():
    import subprocess
    import sys

    from orchestrator import __version__

    out = subprocess.run([sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"quantsweep {__version__}"
