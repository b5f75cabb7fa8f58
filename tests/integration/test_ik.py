"""ik_llama.cpp as a second toolchain, on its real tools: a sweep with one of its own weight types, rows that
name it, and `compare` against the same matrix on mainline llama.cpp. Needs `make toolchain-ik` (`.ci/run`
builds it); without an ik build these tests skip, saying so."""

import json

import pytest

from orchestrator.cli import main
from orchestrator.errors import ToolchainError
from orchestrator.inputs import gguf_info
from orchestrator.results.store import Store
from orchestrator.tools import toolchain

from ..helpers import small_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ik_tools():
    try:
        return toolchain.find(flavor="ik")
    except ToolchainError as e:
        pytest.skip(f"no ik_llama.cpp build here ({e}); `make toolchain-ik` builds one")


def _ik_recipe(tmp_path, model, name, weights):
    path = small_recipe(tmp_path, model, name=name, weights=weights, pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    path.write_text("toolchain: ik\n" + path.read_text())
    return path


def test_ik_sweep_and_compare_with_mainline(tmp_path, tools, ik_tools, demo_model, capsys, monkeypatch):
    here = tmp_path / "here"  # where the user runs quantsweep: ik's llama.log must not land there
    here.mkdir()
    monkeypatch.chdir(here)
    ws = tmp_path / "ws"
    ik = _ik_recipe(tmp_path, demo_model, "ik", ("Q8_0", "Q4_K_M", "IQ4_KS"))
    ml = small_recipe(tmp_path, demo_model, name="ml", weights=("Q8_0", "Q4_K_M"),
                      pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    assert main(["plan", str(ik), "--workspace", str(ws)]) == 0
    assert f"toolchain ik_llama.cpp {ik_tools.commit}" in capsys.readouterr().out
    assert main(["run", str(ik), "--workspace", str(ws), "-q"]) == 0
    assert main(["run", str(ml), "--workspace", str(ws), "-q"]) == 0
    store = Store(ws / "store.sqlite")
    rows = store.results()
    assert (rows.status == "ok").all(), rows[rows.status != "ok"][["weights", "error"]]
    by = {name: rows[rows.recipe == name] for name in ("ik", "ml")}
    assert set(by["ik"].toolchain_name) == {"ik_llama.cpp"} and set(by["ml"].toolchain_name) == {"llama.cpp"}
    assert set(by["ik"].toolchain_commit) == {ik_tools.commit}
    kld = by["ik"][by["ik"].measurement == "kld"].set_index(["weights", "type_k"])
    assert len(kld) == 6 and (kld.kld_mean > 0).all() and kld.kld_mean.notna().all()
    # IQ4_KS is ik's own: the file holds its tensors (read by our GGUF reader, which knows ik's types), and it
    # is smaller than Q8_0 and further from the reference
    iq = kld.loc[("IQ4_KS", "f16")]
    assert "IQ4_KS" in json.loads(iq.tensor_mix_json)
    assert iq.file_bytes < kld.loc[("Q8_0", "f16"), "file_bytes"]
    assert kld.loc[("Q8_0", "f16"), "kld_mean"] < iq.kld_mean
    iq_file = next(ws.rglob("models/*IQ4_KS*.gguf"))
    assert "IQ4_KS" in {t.type_name for t in gguf_info.Gguf(iq_file).tensors}
    bench = by["ik"][by["ik"].measurement == "bench"]
    assert len(bench) == 12 and (bench.ts_mean > 0).all()
    assert list(here.iterdir()) == [] and list(ws.rglob("logs/*/llama.log"))  # with the job's logs

    # the same cells on the two toolchains: the same quantities within their ±, speed side by side
    capsys.readouterr()
    assert main(["compare", "ml", "ik", "--workspace", str(ws), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert any("differ in toolchain: llama.cpp vs ik_llama.cpp" in d for d in cmp["run_differences"])
    both = [c for c in cmp["cells"] if c["in"] == "both"]
    assert {(c["weights"], c["type_k"]) for c in both} == {(w, k) for w in ("Q8_0", "Q4_K_M") for k in ("f16", "q8_0")}
    assert [c["weights"] for c in cmp["cells"] if c["in"] == "B only"] == ["IQ4_KS", "IQ4_KS"]
    for c in both:
        assert c["pp_ts_a"] > 0 and c["pp_ts_b"] > 0 and c["pp_ts_ratio"] == pytest.approx(c["pp_ts_b"] / c["pp_ts_a"])
        assert c["tool_wall_s_a"] > 0 and c["tool_wall_s_b"] > 0
    # Q8_0 with an f16 cache is made and read the same way by both builds: no difference beyond the ±
    # (ik's own K-quant quantizer makes another Q4_K_M: that difference may show, and compare says so)
    q8 = next(c for c in both if (c["weights"], c["type_k"]) == ("Q8_0", "f16"))
    assert abs(q8["kld_mean_delta"]) <= q8["kld_mean_delta_err"] and "KLD" not in q8["differs"]
    assert main(["compare", "ml", "ik", "--workspace", str(ws)]) == 0
    text = capsys.readouterr().out
    assert "differ in toolchain" in text and "Speed side by side" in text


def test_toolchain_flavors_are_not_mixed(tmp_path, tools, ik_tools, demo_model, capsys):
    ws = tmp_path / "ws"
    ik = _ik_recipe(tmp_path, demo_model, "ik", ("Q8_0",))
    ml = small_recipe(tmp_path, demo_model, name="ml", weights=("Q8_0",))
    # the ik tools named for a mainline recipe, and the reverse: one line naming both, exit 3 (the toolchain),
    # before any tool runs
    assert main(["run", str(ml), "--workspace", str(ws), "--llama-cpp", str(ik_tools.bin_dir)]) == 3
    err = capsys.readouterr().err.strip()
    assert "ik_llama.cpp" in err and "llama.cpp" in err and len(err.splitlines()) == 1
    assert main(["run", str(ik), "--workspace", str(ws), "--llama-cpp", str(tools.bin_dir)]) == 3
    err = capsys.readouterr().err.strip()
    assert "ik_llama.cpp" in err and len(err.splitlines()) == 1
    assert not (ws / "store.sqlite").exists() or Store(ws / "store.sqlite").results().empty
