"""What the report says a model is: its file type from the metadata, the real tensor mix beside it,
and the fallbacks that explain an odd BPW (Gemma 3 270M, recorded in gemma3_gguf_info.json)."""

import json

import pandas as pd

from orchestrator.inputs.gguf_info import GGUFInfo
from orchestrator.report import plots, tables

from .helpers import BUILD, FIXTURES

INFO = json.loads((FIXTURES / BUILD / "gemma3_gguf_info.json").read_text())


def _info(name: str) -> GGUFInfo:
    d = INFO[name]
    return GGUFInfo(architecture=d["architecture"], name="", n_vocab=d["n_vocab"], file_type=d["file_type"],
                    tensor_bytes=sum(d["type_bytes"].values()), n_params=1, tensor_types=d["tensor_types"],
                    context_length=None, hparams=d["hparams"], type_bytes=d["type_bytes"])


def test_the_file_type_comes_from_the_metadata_not_the_most_frequent_tensor():
    src = _info("source")
    assert src.main_type == "Q5_0"  # the most frequent quantized tensor type: not what the file is
    assert src.file_type_name == "Q4_K_M"
    assert _info("q2_k").file_type_name == "Q2_K"
    assert GGUFInfo("llama", "", 1, None, 1, 1, {"Q8_0": 3, "F32": 2}, None).file_type_name == "Q8_0 (most tensors)"


def test_the_reference_line_names_the_file_type_and_the_mix():
    row = pd.Series({"reference": "F16", "source_quant": _info("source").file_type_name,
                     "source_tensor_mix_json": json.dumps(INFO["source"]["type_bytes"])})
    text = tables._reference(row)
    assert "The source itself is Q4_K_M (its file type, tensor bytes Q8_0 73 %, Q5_0 18 %, Q4_K 5 %)" in text
    assert "is Q5_0" not in text


def _kld_rows():
    out = []
    for w, name, fallbacks, bpw in (("Q4_K_M", "source", 0, 7.36), ("Q2_K", "q2_k", 90, 6.88)):
        out.append({"measurement": "kld", "status": "ok", "weights": w, "type_k": "f16", "type_v": "f16",
                    "ctx": 512, "kld_mean": 0.1, "kld_mean_err": 0.01, "ppl_q": 20.0, "ppl_q_err": 1.0,
                    "ppl_ratio": 1.1, "ppl_ratio_err": 0.01, "same_top": 80.0, "same_top_err": 1.0,
                    "file_bytes": sum(INFO[name]["type_bytes"].values()), "bpw": bpw,
                    "tensor_mix_json": json.dumps(INFO[name]["type_bytes"]), "fallback_tensors": fallbacks,
                    "test": "", "ts_mean": None, "ts_std": None})
    return pd.DataFrame(out)


def test_the_tables_show_the_mix_and_the_fallbacks():
    kv = tables.kv_table(_kld_rows()).set_index("Weights")
    assert kv.loc["Q2_K", "Tensor mix"] == "Q8_0 77 %, Q4_0 15 % (90 fallbacks)"
    assert kv.loc["Q4_K_M", "Tensor mix"] == "Q8_0 73 %, Q5_0 18 %"
    assert "File MiB" in kv.columns and "Size (MiB)" not in kv.columns


def test_plot_labels_explain_an_odd_bpw():
    labels = plots.weights_labels(_kld_rows())
    assert labels == {"Q4_K_M": "Q4_K_M", "Q2_K": "Q2_K (77 % Q8_0, 90 fallbacks)"}


def test_speed_table_flags_an_unsteady_bench_and_the_plot_never_goes_below_zero(tmp_path):
    k = _kld_rows()
    bench = k.assign(measurement="bench", test="tg16", n_gen=16, n_prompt=0, n_depth=0,
                     ts_mean=[40.0, 9.17], ts_std=[0.4, 11.76])
    sp = tables.speed(pd.concat([k, bench], ignore_index=True)).set_index("weights")
    assert sp.loc["Q2_K", "tg16 t/s"] == "9.17 ± 11.76 (unsteady)"
    assert sp.loc["Q4_K_M", "tg16 t/s"] == "40.00 ± 0.40"
    from orchestrator.report import analysis

    cells = analysis.cells(pd.concat([k, bench], ignore_index=True).assign(model_name="m", reference="F16",
                                                                             corpus="c", toolchain_backends="CPU"))
    assert list(cells.tg_unsteady) == [False, True]
    assert plots.speed_xerr([9.17, 40.0], [11.76, 0.4]) == [[9.17, 0.4], [11.76, 0.4]]
    assert plots.kld_vs_speed(cells, tmp_path, plots._plt())[0].read_bytes()[:4] == b"\x89PNG"
