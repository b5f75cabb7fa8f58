"""`make bench`, Ray part: the small real matrix of bench/overhead.py run locally and through Ray
(`--ray local`: a one-node Ray on this machine, so the same cores do the same tool runs). Prints Ray's
own cost per task (sent → result back, less the task's own time: its dispatch, any wait for a free CPU,
and the way back; the smallest is the cost itself), the sweep walls, and the bytes that crossed
between the coordinator and the nodes per job kind. Skipped without Ray."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


from tests.helpers import ray_token, small_recipe
from bench import scratch

from orchestrator import commands
from orchestrator.inputs import hub
from orchestrator.recipe import model as recipe
from orchestrator.output import Output

REPO = Path(__file__).parents[1]


def main() -> int:
    # a token of its own, set before Ray is imported (it reads them then): a bench never writes ~/.ray
    os.environ.update(ray_token(scratch.folder("qs-bench-ray-token-")))
    try:
        import ray
    except ImportError:
        print("ray: not installed (pip install 'quantsweep[ray]'): skipped")
        return 0
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a one-machine cluster stays on 127.0.0.1
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    model = hub.fetch_model(recipe.load(REPO / "recipes" / "demo.yaml").model, REPO)
    tmp = scratch.folder("qs-bench-ray-")

    path = small_recipe(tmp, model, name="bench", ctx=128, chunks=4, weights=("Q8_0", "Q4_K_M", "Q2_K"),
                        pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    quiet = Output(quiet=True, write=lambda _: None)
    t0 = time.monotonic()
    commands.run(path, tmp / "local", None, False, True, quiet)
    local = time.monotonic() - t0
    t0 = time.monotonic()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    init = time.monotonic() - t0
    t0 = time.monotonic()
    commands.run(path, tmp / "ray", None, False, True, quiet, ray="local", ray_node_dir=str(tmp / "nodes"))
    wall = time.monotonic() - t0
    ray.shutdown()
    s = json.loads((tmp / "ray" / "status.json").read_text())
    o = s["overhead_s"]
    print(f"ray: the same matrix, {s['tasks']} tasks on a one-node Ray ({os.cpu_count()} CPUs): wall {wall:.1f}s vs "
          f"{local:.1f}s local (Ray start-up {init:.1f}s not included)")
    print(f"  Ray's cost per task: {1000 * o['min']:.0f} ms at least, {1000 * o['median']:.0f} ms median (the "
          "median includes waits for a free CPU)")
    for kind, b in sorted(s["result_bytes"].items()):
        print(f"  {kind:<10} {b['tasks']:>2} tasks: {b['sent'] / b['tasks'] / 1024:.1f} KiB sent, "
              f"{b['back'] / b['tasks'] / 1024:.1f} KiB back per task; artifacts moved: none (node-local)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
