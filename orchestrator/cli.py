"""The `quantsweep` command: parse options, call the domain, print. No logic lives here."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from orchestrator import __version__, output
from orchestrator.errors import PipeClosed, QuantsweepError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sweep llama.cpp weight quants × K/V cache types: KLD, PPL, speed, tables.\n\n"
                  "Exit codes: 0 done; 1 cells failed (recorded); 2 bad input (nothing written); 3 the machine "
                  "or the workspace (busy, read-only, disk full, a failed download); 130 interrupted.")
toolchain_app = typer.Typer(no_args_is_help=True, help="The llama.cpp tools quantsweep drives.")
app.add_typer(toolchain_app, name="toolchain")

WS = typer.Option(None, "--workspace", "-w", help="store, artifacts and logs [default: ./.quantsweep or "
                  "$QUANTSWEEP_WORKSPACE]")
LLAMA = typer.Option(None, "--llama-cpp", help="directory with the llama.cpp tools [$QUANTSWEEP_LLAMA_CPP]")
JSON = typer.Option(False, "--json", help="the same answer as JSON, for scripts")
DEVICES = typer.Option(None, "--devices", envvar="QUANTSWEEP_DEVICES",
                       help="only these GPUs: indices or UUID prefixes, e.g. 0,2")


def _out(line: str = "") -> None:
    output.current()(line)


def _sink(as_json: bool = False, quiet: bool = False) -> output.Output:
    """This command's output: answers as text or JSON, warnings and notes on stderr."""
    return output.use(output.Output(as_json, quiet))


@app.command()
def plan(recipe: Path = typer.Argument(..., help="recipe YAML"), workspace: Optional[Path] = WS,
         llama_cpp: Optional[str] = LLAMA, as_json: bool = JSON,
         devices: Optional[str] = DEVICES, parallel: int = typer.Option(1, "--parallel", "-j", min=1),
         ray: Optional[str] = typer.Option(None, "--ray", help="also where the data would be on this Ray "
                                           "cluster, and what crosses the network"),
         ray_shared: Optional[Path] = typer.Option(None, "--ray-shared", help="with --ray: as `run --ray-shared`")):
    """Show the matrix: cells, what is cached, what will run, the disk the reference logits need, the schedule."""
    from orchestrator import commands

    commands.plan(recipe, workspace, llama_cpp, _sink(as_json), devices=devices, parallel=parallel, ray=ray,
                  ray_shared=ray_shared)


@app.command()
def run(recipe: Path = typer.Argument(..., help="recipe YAML"), workspace: Optional[Path] = WS,
        llama_cpp: Optional[str] = LLAMA, retry_failed: bool = typer.Option(
            False, "--retry-failed", help="run again the jobs whose failure is recorded"),
        rerun: Optional[str] = typer.Option(None, "--rerun", help="measure again what is already measured: "
                                            "bench (speeds taken beside other work, on a quiet machine)"),
        devices: Optional[str] = DEVICES,
        parallel: int = typer.Option(1, "--parallel", "-j", min=1, help="on a CPU-only box: jobs at once, "
                                     "the cores split between them (a bench always runs alone)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines: the summary and errors only"),
        host: Optional[str] = typer.Option(None, "--host", help="run it on this box instead (anything `ssh` "
                                           "reaches: user@box, an ~/.ssh/config alias), detached from this shell"),
        remote_dir: Optional[str] = typer.Option(None, "--remote-dir", help="with --host: quantsweep's folder on "
                                                 "the box [default: ~/.quantsweep or $QUANTSWEEP_REMOTE_DIR]"),
        remote_llama_cpp: Optional[str] = typer.Option(None, "--remote-llama-cpp", help="with --host: the tools "
                                                       "already on the box [default: found or built there]"),
        cpu: bool = typer.Option(False, "--cpu", help="with --host: a box without a GPU is fine"),
        detach: bool = typer.Option(False, "--detach", "-d", help="with --host: start it and return"),
        ray: Optional[str] = typer.Option(None, "--ray", help="run the jobs on a Ray cluster: auto, ray://head:10001, "
                                          "host:port, or local [$RAY_ADDRESS with auto]"),
        ray_shared: Optional[Path] = typer.Option(None, "--ray-shared", help="with --ray: a folder every node "
                                                  "reads and writes at this path (NFS…): jobs run on any node; "
                                                  "[default: each node keeps its own artifacts]"),
        ray_node_dir: Optional[str] = typer.Option(None, "--ray-node-dir", help="with --ray: where each node "
                                                   "keeps its artifacts [default: its quantsweep cache/ray]")):
    """Run the sweep: every device busy, resumable, Ctrl-C safe; a failing cell is recorded and the sweep goes on."""
    from orchestrator import commands

    if host is not None:
        from orchestrator.execute import remote

        args = [f"--parallel={parallel}"] + (["--retry-failed"] if retry_failed else []) + \
            ([f"--rerun={rerun}"] if rerun else []) + ([f"--devices={devices}"] if devices else [])
        raise typer.Exit(remote.run_on(host, recipe, workspace, remote_dir=remote_dir, llama_cpp=remote_llama_cpp,
                                       cpu=cpu, detach=detach, run_args=args))
    raise typer.Exit(commands.run(recipe, workspace, llama_cpp, retry_failed, quiet, _sink(quiet=quiet), rerun=rerun,
                                  devices=devices, parallel=parallel, ray=ray, ray_shared=ray_shared,
                                  ray_node_dir=ray_node_dir))


HOST = typer.Option(None, "--host", help="only this box [default: every box this workspace started a run on]")


@app.command()
def status(workspace: Optional[Path] = WS, host: Optional[str] = HOST, as_json: bool = JSON):
    """Runs on this machine, on boxes (`run --host`) and on a Ray cluster (`run --ray`): what runs where,
    jobs done/total, failures, ETA."""
    from orchestrator.execute import coordinator, remote
    from orchestrator.workspace import Workspace

    ws = Workspace(workspace)
    here = coordinator.read_status(ws.root / coordinator.STATUS_FILE) if host is None else None
    boxes = [] if here is not None and host is None and not (ws.root / "hosts.json").exists() \
        else remote.status(workspace, host)
    _sink(as_json).answer({"local": here, "boxes": boxes},
                          lambda d: coordinator.status_text(d["local"]) + remote.status_text(d["boxes"]))
    if any("error" in b for b in boxes):  # a box that could not be asked: the machine's, not the input's
        raise typer.Exit(3)


@app.command()
def logs(name: Optional[str] = typer.Argument(None, help="recipe name [default: the only remote run]"),
         workspace: Optional[Path] = WS, host: Optional[str] = HOST,
         follow: bool = typer.Option(False, "--follow", "-f", help="until the run ends"),
         lines: int = typer.Option(40, "--lines", "-n")):
    """The log of a run on a box."""
    from orchestrator.execute import remote

    raise typer.Exit(remote.logs(workspace, host, name, follow, lines))


@app.command()
def stop(name: Optional[str] = typer.Argument(None, help="recipe name [default: the only remote run]"),
         workspace: Optional[Path] = WS, host: Optional[str] = HOST):
    """End a run on a box: its tools die, its results stay, `status` says stopped; `run --host` resumes it."""
    from orchestrator.execute import remote

    raise typer.Exit(remote.stop(workspace, host, name, _sink()))


@app.command()
def pull(name: Optional[str] = typer.Argument(None, help="recipe name [default: every remote run]"),
         workspace: Optional[Path] = WS, host: Optional[str] = HOST,
         artifacts: bool = typer.Option(False, "--artifacts", help="also the quantized models and logits")):
    """Merge a box's results into this workspace's store (again at any time: rows already here are kept)."""
    from orchestrator.execute import remote

    raise typer.Exit(remote.pull(workspace, host, name, artifacts, _out))


@app.command("devices")
def devices_(llama_cpp: Optional[str] = LLAMA, devices: Optional[str] = DEVICES, as_json: bool = JSON):
    """What this box has to run jobs on: GPUs (NVML, nvidia-smi, rocm-smi) and the CPU."""
    from orchestrator import commands

    commands.devices(llama_cpp, devices, _sink(as_json))


@app.command()
def report(name: str = typer.Argument(..., help="recipe name (as in the store)"), workspace: Optional[Path] = WS,
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder [default: reports/NAME]")):
    """Regenerate tables from the store alone (no tool runs)."""
    from orchestrator import commands

    commands.report(name, workspace, out, _out)


@app.command()
def recommend(name: str = typer.Argument(..., help="recipe name (as in the store)"), workspace: Optional[Path] = WS,
              vram: str = typer.Option(..., "--vram", help="memory of the card, e.g. 24GiB"),
              ctx: Optional[str] = typer.Option(None, "--ctx", help="tokens of context, or max"),
              max_kld: Optional[float] = typer.Option(None, "--max-kld", help="the smallest configuration "
                                                      "whose KLD is at most this"),
              reserve: Optional[str] = typer.Option(None, "--reserve", help="kept for the runtime [default: "
                                                    "0.75GiB (a CUDA context ≈ 0.6 GiB, display) when the cells "
                                                    "were measured on a GPU build, else 0]"),
              min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="only cells whose task "
                                                           "accuracy is at least this (0.7 or 70)"),
              task: Optional[str] = typer.Option(None, "--task", help="the task --min-accuracy reads, shown "
                                                 "beside each cell [default: the recipe's only task]"),
              as_json: bool = JSON):
    """Which measured (weights, K, V) cell to use on this card at this context, with a verdict."""
    from orchestrator import commands

    commands.recommend(name, workspace, vram, ctx, max_kld, reserve, _sink(as_json), min_accuracy, task)


@app.command()
def memory(model: Path = typer.Argument(..., help="a GGUF file"),
           ctx: str = typer.Option("4096,32768", "--ctx", help="contexts, comma-separated"),
           pairs: str = typer.Option("f16/f16,q8_0/q8_0,q5_1/q5_1,q4_0/q4_0", "--pairs", help="K/V pairs"),
           check: bool = typer.Option(False, "--check", help="ask llama.cpp for its own numbers beside ours"),
           gpu_layers: int = typer.Option(999, "--gpu-layers", "-ngl", help="with --check: layers offloaded"),
           llama_cpp: Optional[str] = LLAMA):
    """Memory a model needs per context and K/V pair: weights + K + V + compute allowance."""
    from orchestrator import commands

    raise typer.Exit(commands.memory_table(model, ctx, pairs, check, gpu_layers, llama_cpp, _out))


@app.command()
def compare(a: str = typer.Argument(..., help="recipe name, or NAME@WORKSPACE for another store"),
            b: str = typer.Argument(..., help="recipe name, or NAME@WORKSPACE"), workspace: Optional[Path] = WS,
            as_json: bool = JSON):
    """Two runs cell by cell: Δ KLD, Δ PPL ratio, Δ same-top, flagged only beyond their combined ±."""
    from orchestrator import commands

    commands.compare(a, b, workspace, _sink(as_json))


@app.command()
def export(workspace: Optional[Path] = WS,
           fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl, csv or parquet"),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="file [default: stdout]"),
           name: Optional[str] = typer.Option(None, "--name", help="only this recipe")):
    """Every result row, with its statistics and provenance."""
    from orchestrator import commands

    commands.export(workspace, fmt, output, name, _out)


@app.command("import")
def import_(files: list[Path] = typer.Argument(..., help="llama-perplexity logs (KLD, PPL, --hellaswag, "
                                              "--winogrande, --multiple-choice), llama-bench json/jsonl"),
            workspace: Optional[Path] = WS, name: str = typer.Option("imported", "--name"),
            weights: Optional[str] = typer.Option(None, "--weights", help="label [default: file name]; "
                                                  "`reference` for the model task logs are paired against"),
            cache_k: Optional[str] = typer.Option(None, "--ctk"), cache_v: Optional[str] = typer.Option(None, "--ctv"),
            task: Optional[str] = typer.Option(None, "--task", help="a task log's task name [default: its mode]")):
    """Bring logs made by hand into the store, as rows of recipe NAME."""
    from orchestrator import commands

    commands.import_logs(files, workspace, name, weights, cache_k, cache_v, _out, task)


@app.command()
def schema():
    """Print the recipe JSON Schema (for editors)."""
    from orchestrator.recipe.model import schema as recipe_schema

    _out(json.dumps(recipe_schema(), indent=2))


@toolchain_app.command("show")
def toolchain_show(llama_cpp: Optional[str] = LLAMA, as_json: bool = JSON,
                   ik: bool = typer.Option(False, "--ik",
                                           help="the ik_llama.cpp tools (recipes with `toolchain: ik`)")):
    """Which llama.cpp tools are used: directory, commit, backends, devices."""
    from orchestrator import commands

    commands.toolchain_show(llama_cpp, _sink(as_json), "ik" if ik else "mainline")


@toolchain_app.command("build")
def toolchain_build(cuda: Optional[bool] = typer.Option(None, "--cuda/--no-cuda", help="[default: when "
                                                        "nvcc and an NVIDIA device are present]"),
                    jobs: Optional[int] = typer.Option(None, "--jobs", "-j"),
                    fa_quants: str = typer.Option("all", "--fa-quants", help="CUDA flash-attention K-V "
                                                  "pairs to compile: all, or e.g. q8_0-q8_0,q8_0-q4_0"),
                    portable: bool = typer.Option(False, "--portable", help="for other machines (an image): "
                                                  "x86-64-v3, CUDA sm_80/86/89/90, not tuned to this CPU"),
                    rocm: Optional[bool] = typer.Option(None, "--rocm/--no-rocm", help="AMD GPUs through HIP "
                                                        "[default: when hipconfig and /dev/kfd are present "
                                                        "and CUDA is not]"),
                    ik: bool = typer.Option(False, "--ik", help="ik_llama.cpp (ik-llama-cpp-python 0.1.5's tree) "
                                            "instead of llama.cpp, for recipes with `toolchain: ik`")):
    """Build llama-quantize/perplexity/bench/imatrix from the pinned source (cached per machine)."""
    from orchestrator.tools import toolchain

    tc = toolchain.build(cuda=cuda, jobs=jobs, fa_quants=fa_quants, portable=portable, rocm=rocm,
                         log=_sink().note, flavor="ik" if ik else "mainline")
    _out(str(tc.bin_dir))


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="print the version")):
    if version:
        _out(f"quantsweep {__version__}")
        raise typer.Exit(0)


INTERRUPTED = "quantsweep: interrupted; the next `run` resumes where this one stopped"
EXIT_ENVIRONMENT = 3


def _os_error(exc: OSError) -> str:
    """One line for an OSError: what failed, on which file, and for a full disk which disk."""
    import errno

    from orchestrator.files import disk_of

    name = exc.filename or ""
    text = f"{exc.strerror or exc}" + (f": {name}" if name else "")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and name:
        return f"disk full: {disk_of(Path(name))}; nothing half-written was kept ({text})"
    return text


def _quiet_stdout() -> None:
    """After a closed pipe, Python would print an error while flushing stdout at exit: point it nowhere."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    with _signals_interrupt() as got:
        rv = _main(argv)
    return 128 + got[0] if got and rv == 130 else rv


@contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP (a closed terminal, `kill`) end a command as Ctrl-C does: the tools in flight
    die with it and the run is recorded as interrupted, not left `running`. Yields the signal received."""
    import signal

    got: list[int] = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, handler)
    try:
        yield got
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _command():
    """The click command of `app`, with the on/off flags shown as taking no value (typer labels every
    option with a type, `--quiet <bool>`, which reads as if the flag needed one)."""
    command = typer.main.get_command(app)

    def unlabel(cmd) -> None:
        for param in cmd.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        made = cmd.get_help_option  # --help itself is made per call

        def help_option(ctx, made=made):
            option = made(ctx)
            if option is not None:
                option.metavar = ""
            return option

        cmd.get_help_option = help_option
        for sub in getattr(cmd, "commands", {}).values():
            unlabel(sub)

    unlabel(command)
    return command


def _main(argv: list[str] | None) -> int:
    try:
        rv = _command().main(args=argv, prog_name="quantsweep", standalone_mode=False)
    except QuantsweepError as exc:
        print(f"quantsweep: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors (unknown option, missing argument): click's, vendored
        exc.show()  # type: ignore[attr-defined]  # every one typer raises is a click exception
        return getattr(exc, "exit_code", 2)
    except (KeyboardInterrupt, typer.Abort):
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except sqlite3.OperationalError as exc:  # the store could not be written: SQLite rolled back, nothing torn
        why = " (disk full or file-size limit)" if "full" in str(exc) or "disk I/O" in str(exc) else ""
        print(f"quantsweep: error: the store could not be written: {exc}{why}; what was recorded before is "
              "intact, the next `run` resumes from it", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except PipeClosed:  # `quantsweep … | head`: the reader has what it wanted, as with any Unix tool
        _quiet_stdout()
        return 0
    except OSError as exc:  # the machine, not the input: a full disk, a read-only or vanished folder
        print(f"quantsweep: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except typer.Exit as exc:
        rv = exc.exit_code
    rv = rv if isinstance(rv, int) else 0
    if rv == 130:  # typer turns Ctrl-C into exit code 130 before we see it
        print(INTERRUPTED, file=sys.stderr)
    return rv


if __name__ == "__main__":
    sys.exit(main())
