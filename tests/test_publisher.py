"""What a publisher met on a new model: the small items (exit codes, export names and integers, sizes)."""

import json

import pytest

from orchestrator.plan import memory
from orchestrator.cli import main
from tests.doubles import big_vocab_gguf


def _imported(tmp_path, fixture_text):
    log = tmp_path / "kld.log"
    log.write_text(fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout"))
    ws = tmp_path / "ws"
    assert main(["import", str(log), "--workspace", str(ws), "--name", "r"]) == 0
    return ws


def test_export_of_an_unknown_name_says_so(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--name", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"quantsweep: error: --name 'nosuch': no such run in {ws}; known: r"


def test_integers_stay_integers_in_every_export(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["ctx"] == 128 and isinstance(row["ctx"], int) and isinstance(row["n_chunks"], int)
    assert main(["export", "--workspace", str(ws), "--format", "csv"]) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    cols = dict(zip(header.split(","), first.split(",")))
    assert cols['"ctx"'] == "128"


@pytest.mark.parametrize("text, gib", [("24G", 24.0), ("24", 24.0), ("24GiB", 24.0), ("24 g", 24.0),
                                       ("24GB", 24e9 / 2**30), ("512M", 0.5)])
def test_sizes_a_card_is_sold_with(text, gib):
    assert memory.parse_size(text) == pytest.approx(gib * 2**30)


def test_a_busy_workspace_exits_3(tmp_path, fixture_text, capsys):
    from orchestrator.workspace import Workspace

    ws = _imported(tmp_path, fixture_text)
    with Workspace(ws).lock():
        assert main(["import", str(tmp_path / "kld.log"), "--workspace", str(ws)]) == 3
    assert "is in use by another quantsweep run" in capsys.readouterr().err


def test_a_description_reads_the_tensor_table_not_the_tokenizer(tmp_path):
    """What describes a model equals what gguf-py's full reader gives, on a 262k vocabulary; the long
    arrays are skipped by their lengths (make bench prints the time against gguf-py's)."""
    from gguf import GGUFReader

    from orchestrator.inputs import gguf_info

    path = big_vocab_gguf(tmp_path / "big.gguf")
    lean, full = gguf_info.Gguf(path), GGUFReader(path)
    assert [(t.name, t.shape, t.type_name, t.n_elements, t.n_bytes) for t in lean.tensors] == \
        [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements), int(t.n_bytes))
         for t in full.tensors]
    assert isinstance(lean.fields["tokenizer.ggml.tokens"], gguf_info.LongArray)
    assert lean.fields["gemma3.attention.sliding_window_pattern"] == [True, False, True]
    for key, field in full.fields.items():
        if not key.startswith(("GGUF.", "tokenizer.ggml.")):
            assert lean.fields[key] == field.contents(), key
    info = gguf_info._read(path)
    assert info.n_vocab == 262_144 and info.context_length == 32768 and info.file_type == 15
    assert info.tensor_types == {"F16": 1, "Q8_0": 1, "F32": 1}
    assert info.n_params == 64 * 256 + 32 * 256 + 256
    assert info.hparams["attention.sliding_window"] == 512 and info.hparams["block_count"] == 2


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_model_is_named_not_described(tmp_path, cut):
    from orchestrator.inputs import gguf_info
    from orchestrator.errors import InputFileError

    path = big_vocab_gguf(tmp_path / "big.gguf", n_vocab=1000)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(InputFileError, match="not a readable GGUF .truncated or damaged"):
        gguf_info._read(path)


def _demo_cells(twin: bool = True):
    """The demo store's cells, with a same-size twin of Q4_K_M (as an imatrix variant would be)."""
    import pandas as pd

    from orchestrator.report import analysis
    from orchestrator.results.store import Store
    from tests.helpers import FIXTURES

    df = Store.read_only(FIXTURES / "stores" / "demo-v3.sqlite").results()
    if twin:
        t = df[df.weights == "Q4_K_M"].copy()
        t["weights"] = "Q4_K_M-imat"
        t["kld_mean"] = t.kld_mean * 0.97
        t["job_key"] = t.job_key + "-imat"
        t["cell_id"] = t.cell_id + "-imat"
        df = pd.concat([df, t], ignore_index=True)
    return analysis.cells(df)


def test_every_figure_shows_all_its_legends_and_labels(tmp_path, monkeypatch):
    """The saved image is the frame of every legend and label; the speed plot's second legend (added with
    ax.add_artist) lies outside matplotlib's own tight box, which is what cut it."""
    from PIL import Image

    from orchestrator.report import analysis
    from orchestrator.report import plots

    seen = {}
    save = plots._save

    def checked(fig, out, stem):
        box = plots.frame(fig)
        seen[stem] = (plots.outside(fig, box), bool(plots.outside(fig, fig.get_tightbbox())), box)
        return save(fig, out, stem)

    monkeypatch.setattr(plots, "_save", checked)
    k, plt = _demo_cells(), plots._plt()
    for name, fn in plots.FIGURES.items():
        args = (k, analysis.architecture(k), 256) if name == "kld_vs_kv_memory" else (k,)
        paths = fn(*args, tmp_path, plt)
        cut, _, box = seen[name]
        assert cut == [], f"{name}: {[str(a) for a in cut]} outside the saved image"
        with Image.open(paths[0]) as im:  # the PNG is that frame, at 150 dpi
            assert abs(im.size[0] - box.width * 150) <= 2 and abs(im.size[1] - box.height * 150) <= 2
    assert seen["kld_vs_speed"][1], "the tight box alone must have cut the speed plot's K/V legend"


def test_same_size_variants_are_apart_and_each_named(tmp_path, monkeypatch):
    from orchestrator.report import plots

    notes = {}
    unstack = plots.unstack

    def spy(fig, annotations, **kw):
        unstack(fig, annotations, **kw)
        r = fig.canvas.get_renderer()
        notes["texts"] = [a.get_text() for a in annotations]
        notes["boxes"] = [a.get_window_extent(r) for a in annotations]
        notes["x"] = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].lines}

    monkeypatch.setattr(plots, "unstack", spy)
    plots.kld_vs_size(_demo_cells(), tmp_path, plots._plt())
    assert any(t.startswith("Q4_K_M-imat") for t in notes["texts"])
    assert any(t.split()[0] == "Q4_K_M" for t in notes["texts"]), "the twin off the frontier is named too"
    boxes = notes["boxes"]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[:i])
    apart = plots._apart(_demo_cells())
    assert apart["Q4_K_M"] == 1 and apart["Q4_K_M-imat"] > 1.01


def _imatrix_report(tmp_path):
    """The demo's report with a Q4_K_M twin whose importance matrix was calibrated on the evaluated text."""
    import pandas as pd

    from orchestrator.report import render
    from orchestrator.results.store import Store
    from tests.helpers import FIXTURES

    df = Store.read_only(FIXTURES / "stores" / "demo-v3.sqlite").results()
    t = df[df.weights == "Q4_K_M"].copy()
    t["weights"], t["job_key"] = "Q4_K_M-imat", t.job_key + "-imat"
    t["imatrix"] = "python-docs, ctx 512, all chunks; calibrated on the evaluated text"
    out = tmp_path / "report"
    render.write(pd.concat([df, t], ignore_index=True), out, "demo")
    return out


def test_every_report_says_how_the_importance_matrix_was_made(tmp_path):
    out = _imatrix_report(tmp_path)
    how = "python-docs, ctx 512, all chunks; calibrated on the evaluated text"
    caveat = "Caveat: the importance matrix of Q4_K_M-imat was calibrated on the evaluated text"
    for name in ("README.md", "model-card.md", "report.html"):
        text = (out / name).read_text()
        assert how in text and caveat in text, name
    readme = (out / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| =") and "Q4_K_M-imat" in line)
    assert how in row  # the main table says it beside the cell
    assert f"**Importance matrices**: Q4_K_M-imat: {how}" in readme
    stats = (out / "stats.csv").read_text()
    assert "Importance matrix" in stats and how in stats


def test_the_imatrix_description_names_corpus_chunks_and_the_evaluated_text(tmp_path):
    from orchestrator.recipe import advice
    from tests.helpers import plan_inputs

    inp = plan_inputs(tmp_path, "[{type: Q4_K_M, imatrix: {corpus: python-docs, chunks: 8}}, Q8_0]")
    w = inp.recipe.weights
    assert advice.imatrix_text(w[0], inp) == "python-docs, ctx 512, 8 chunks"
    assert advice.imatrix_text(w[1], inp) is None
    inp.imatrix_inputs[w[0].label] = inp.corpus  # the evaluated text itself
    assert advice.imatrix_text(w[0], inp).endswith("; calibrated on the evaluated text")


CHECK = """<script>window.addEventListener("load", () => {
  const p = document.createElement("pre"); p.id = "qs-check";
  p.textContent = JSON.stringify({width: window.innerWidth, scroll: document.documentElement.scrollWidth,
    images: [...document.images].map(i => i.complete && i.naturalWidth > 0)});
  document.body.appendChild(p); });</script>"""


def test_the_html_report_fits_a_1280px_window_in_a_real_browser(tmp_path):
    """report.html in headless Chromium (Debian's package, which .ci/run installs): no horizontal
    overflow at 1280 px, every image loads."""
    import re
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium here (Debian's chromium package; .ci/run installs it as root)")
    out = _imatrix_report(tmp_path)
    page = out / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="qs-check">(.*?)</pre>', dom)
    assert found, f"the page did not load: {dom[:200]!r}"
    check = json.loads(found.group(1))
    assert check["width"] == 1280 and check["scroll"] <= 1280, check
    assert len(check["images"]) == 4 and all(check["images"]), check


@pytest.mark.parametrize("argv", [["run", "--help"], ["toolchain", "build", "--help"], ["status", "--help"]])
def test_flags_show_no_value_in_help(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "140")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--help" in out and "<bool>" not in out
    if argv[0] == "run":
        flag = next(line for line in out.splitlines() if "--retry-failed" in line)
        assert flag.split("--retry-failed")[1].split()[:2] == ["run", "again"]  # the help, no value
        assert "<int range>" in out  # options that take a value still say what


def test_a_corpus_too_short_for_the_context_is_refused_with_the_numbers(tmp_path):
    """llama-perplexity needs 2·ctx tokens; the plan knows the corpus's tokens (llama-tokenize) and says so
    before anything runs; a recipe the text suffices for passes, and its chunks are counted from tokens."""
    from dataclasses import replace

    from orchestrator.jobs.perplexity import n_chunks
    from orchestrator.inputs import prepare
    from orchestrator.errors import RecipeError
    from tests.helpers import plan_inputs

    inp = plan_inputs(tmp_path, "[Q8_0]")
    text = tmp_path / "gpl.txt"
    text.write_text("x" * 35_000)
    corpus = replace(inp.corpus, path=text)
    inp = replace(inp, corpus=corpus, corpus_tokens={corpus.sha256: 7_812},
                  recipe=inp.recipe.model_copy(update={"evaluation": inp.recipe.evaluation.model_copy(
                      update={"ctx": [512, 4096]})}))
    with pytest.raises(RecipeError) as e:
        prepare.check_corpus_length(inp, tmp_path / "w.yaml")
    assert e.value.exit_code == 2 and e.value.field == "evaluation.ctx"
    assert str(e.value).endswith("ctx 4096 needs at least 8192 tokens of text (llama-perplexity evaluates 2·ctx at "
                                 f"least); the corpus {corpus.label} is 7812 tokens for this model: use ctx ≤ 3906 "
                                 "(of these, 512), or a longer corpus")
    fine = replace(inp, corpus_tokens={corpus.sha256: 9_000})
    prepare.check_corpus_length(fine, tmp_path / "w.yaml")
    assert n_chunks(fine, 4096) == 2 and n_chunks(fine, 512) == 17  # 9000 // ctx
    # no tokenizer: only what is certain (a token is at least a byte) is refused
    text.write_text("x" * 5_000)
    prepare.check_corpus_length(replace(fine, corpus_tokens={}, recipe=plan_inputs(tmp_path, "[Q8_0]").recipe),
                                tmp_path / "w.yaml")
    with pytest.raises(RecipeError, match="is 5000 bytes, fewer tokens than that whatever the vocabulary: "
                                          "use ctx ≤ 2500"):
        prepare.check_corpus_length(replace(fine, corpus_tokens={}), tmp_path / "w.yaml")
