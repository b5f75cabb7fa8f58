"""What several test modules share: a plan built from a recipe text, plan inputs, scheduler specs and
boxes, a Hugging Face cache laid out as huggingface_hub writes it, the demo model's keys. Test modules
import from here (and from doubles), never from one another or from a conftest."""

from pathlib import Path

from orchestrator.plan import graph as plan, planner
from orchestrator.recipe import model as recipe
from orchestrator.inputs.gguf_info import GGUFInfo
from orchestrator.inputs.hub import Corpus
from orchestrator.jobs.spec import JobSpec, Resources
from orchestrator.execute.scheduler import Device, Inventory

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BUILD = "0c1e570-cpu-gnu12"  # the build that recorded tests/fixtures/<BUILD>/ (see its README)

GIB = 2**30

INFO = GGUFInfo(architecture="llama", name="m", n_vocab=49152, file_type=3, tensor_bytes=96_576_768,
                n_params=134_515_008, tensor_types={"Q4_1": 210, "F32": 61, "Q8_0": 1}, context_length=8192)
CORPUS = Corpus("python-docs", Path("/c.txt"), "ab" * 32, 400_000)


def build(tmp_path, extra: str = "", weights: str = "[Q8_0, Q4_K_M]", toolchain=None):
    p = tmp_path / "r.yaml"
    p.write_text(f"name: t\nmodel: {{path: m.gguf}}\nreference: F16\nweights: {weights}\n"
                 "cache: {pairs: [[f16, f16], [q8_0, q8_0]], k: [q4_0], v: [q4_0, q8_0]}\n"
                 "evaluation: {ctx: 256, chunks: 8}\n" + extra)
    r = recipe.load(p)
    inp = plan.PlanInputs(r, Path("/m.gguf"), "cd" * 32, INFO, CORPUS,
                          toolchain or {"commit": "0c1e570", "backends": ["CPU"]}, {"cpu": "x"})
    return planner.build(inp)


def plan_inputs(tmp_path, weights: str, imatrix_corpus=None):
    p = tmp_path / "w.yaml"
    p.write_text(f"name: t\nmodel: {{path: m.gguf}}\nweights: {weights}\n")
    r = recipe.load(p)
    im = {w.label: (imatrix_corpus or Corpus("wikitext-2", Path("/w.txt"), "ef" * 32, 1000)) for w in r.weights
          if w.imatrix is not None}
    return plan.PlanInputs(r, Path("/m.gguf"), "cd" * 32, INFO, CORPUS, {"commit": "x"}, {},
                           imatrix_inputs=im)


def spec(key, kind="kld", where="device", gib=0.0, threads=0, exclusive=False, quiet=False):
    return JobSpec(key=key, kind=kind, label=key, tool="t", argv=[], timeout_s=1,
                   resources=Resources(where=where, threads=threads, device_bytes=int(gib * GIB),
                                       exclusive=exclusive, quiet_host=quiet))


def gpus(n, total=24, free=None):
    return tuple(Device(f"GPU-{i}", "RTX 3090", total * GIB, (free if free is not None else total) * GIB, "cuda")
                 for i in range(n))


def box(n=1, total=24, free=None, threads=16):
    return Inventory(gpus(n, total, free), threads)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(root: Path, repo: str, files: dict[str, Path | bytes], kind: str = "models") -> Path:
    base = root / f"{kind}--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(COMMIT)
    for name, content in files.items():
        dest = base / "snapshots" / COMMIT / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    return base / "snapshots" / COMMIT


# the demo model's `llama.*` keys, as gguf_info reads them from SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2 = {"block_count": 30, "context_length": 8192, "embedding_length": 576, "feed_forward_length": 1536,
           "attention.head_count": 9, "attention.head_count_kv": 3, "rope.freq_base": 100000.0,
           "vocab_size": 49152, "rope.dimension_count": 64}


def tools_running_on(path) -> list[str]:
    """The llama.cpp tools running now whose command line names a file under `path` (their pids)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended while we looked
            continue
        if argv and b"llama-" in argv[0] and any(str(path).encode() in a for a in argv):
            out.append(proc.name)
    return out


def small_recipe(tmp_path: Path, model: Path, name: str = "itest", ctx: int = 128, chunks: int = 3,
                 pairs=(("f16", "f16"), ("q4_0", "q4_0")), weights=("Q8_0", "Q2_K"), bench=True,
                 corpus: str = "python-docs") -> Path:
    text = f"""\
name: {name}
model: {{path: {model}}}
reference: F16
weights: [{', '.join(weights)}]
cache:
  pairs: [{', '.join(f'[{k}, {v}]' for k, v in pairs)}]
evaluation: {{corpus: {corpus}, ctx: {ctx}, chunks: {chunks}, batch: 512}}
bench: {{enabled: {str(bench).lower()}, prompt: 16, gen: 4, repetitions: 1}}
"""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def ray_token(folder: Path) -> dict[str, str]:
    """The environment of a Ray cluster with token authentication and a token file of its own: a test or a
    bench never reads or writes the user's ~/.ray/auth_token."""
    import secrets

    path = Path(folder) / "ray-auth-token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


# task files in llama-perplexity's formats, written by the tests (no data set ships in a package)
TASK_SENTENCES = [
    "The cat sat on the mat and looked out of the window at the birds.",
    "She opened the door, walked into the kitchen and put the kettle on the stove.",
    "After the rain stopped, the children ran outside to play in the puddles.",
    "He plugged in the laptop, waited for it to boot and then typed his password.",
    "The chef chopped the onions finely before adding them to the hot pan.",
    "They packed their bags, locked the house and drove to the airport early.",
    "The teacher wrote the equation on the board and asked the class to solve it.",
    "We planted tomatoes in the garden and watered them every evening.",
    "The musician tuned her guitar carefully before the concert began.",
    "The old man fed the pigeons in the park every morning at nine.",
    "To make tea, boil water, pour it over the leaves and let it steep.",
    "The runner tied his shoes, stretched his legs and started the race.",
]
WINOGRANDE_PAIRS = [
    ("The trophy does not fit in the suitcase because the _ is too {}.", "trophy", "suitcase", ("big", "small")),
    ("The man could not lift his son because the _ was so {}.", "man", "son", ("weak", "heavy")),
    ("The councilmen refused the demonstrators a permit because the _ {} violence.", "councilmen",
     "demonstrators", ("feared", "advocated")),
    ("Sam poured water from the bottle into the cup until the _ was {}.", "bottle", "cup", ("empty", "full")),
]


def hellaswag_text(n: int = 24) -> str:
    """n HellaSwag tasks: a sentence's first half as context, its second half the gold ending among three
    others' (the gold index turns 0-3)."""
    import random

    rng, lines = random.Random(3), []
    for i in range(n):
        s = TASK_SENTENCES[i % len(TASK_SENTENCES)]
        words = s.split()
        cut = len(words) // 2
        others = [" " + " ".join(t.split()[len(t.split()) // 2:]) for t in TASK_SENTENCES if t != s]
        endings = rng.sample(others, 3)
        endings.insert(i % 4, " " + " ".join(words[cut:]))
        lines += [" ".join(words[:cut]), str(i % 4), *endings]
    return "\n".join(lines) + "\n"


def winogrande_text(n: int = 16) -> str:
    """n Winogrande tasks as the public CSV has them (a header row, then index,sentence,option1,option2,answer)."""
    rows = ["index,sentence,option1,option2,answer"]
    for i in range(n):
        text, a, b, words = WINOGRANDE_PAIRS[(i // 2) % len(WINOGRANDE_PAIRS)]
        rows.append(f'{i},"{text.format(words[i % 2])}",{a},{b},{1 + i % 2}')
    return "\n".join(rows) + "\n"


CHOICE_QUESTIONS = [
    ("What is the capital of France?", ["Paris", "Berlin", "Madrid", "Rome"], 0),
    ("Which animal says moo?", ["A dog", "A cow", "A cat", "A duck"], 1),
    ("What color is the sky on a clear day?", ["Green", "Red", "Blue", "Yellow"], 2),
    ("How many legs does a spider have?", ["Six", "Four", "Ten", "Eight"], 3),
    ("What do bees make?", ["Honey", "Milk", "Silk", "Wool"], 0),
    ("What is frozen water called?", ["Steam", "Ice", "Fog", "Dew"], 1),
]


def multiple_choice_bytes(n: int = 18) -> bytes:
    """n tasks in llama-perplexity's multiple-choice binary (u32 count, u32 offsets, then per task the
    question and two answer blocks: u32 n, n strings, i32 labels; a string is u32 length + bytes)."""
    import struct

    def text(s: str) -> bytes:
        return struct.pack("<I", len(s.encode())) + s.encode()

    def block(answers, gold) -> bytes:
        return (struct.pack("<I", len(answers)) + b"".join(text(a) for a in answers)
                + struct.pack(f"<{len(answers)}i", *[int(i == gold) for i in range(len(answers))]))

    tasks = []
    for i in range(n):
        q, answers, gold = CHOICE_QUESTIONS[i % len(CHOICE_QUESTIONS)]
        tasks.append(text(q) + block(answers, gold) + block(answers, gold))
    offsets, at = [], 4 + 4 * n
    for t in tasks:
        offsets.append(at)
        at += len(t)
    return struct.pack("<I", n) + struct.pack(f"<{n}I", *offsets) + b"".join(tasks)
