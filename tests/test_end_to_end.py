"""The main job (`make demo`) end to end at toy size: corpus -> supernet -> search -> bundles ->
on-device report, run as the real CLI in a subprocess on every CI run."""
import json
import os
import subprocess
import sys

import pytest

from tf_todm.export import op_report, sidecar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_FIELDS = {"name", "tflite", "sidecar", "target", "quantization", "params", "size_bytes", "wer",
                 "rtf", "latency_ms_median", "latency_ms_p90"}


@pytest.mark.end_to_end
def test_demo_pipeline_at_toy_size(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.demo", "--flagfile=experiments/flags/demo_toy.cfg",
         f"--out_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    budgets = json.loads(open(os.path.join(ROOT, "experiments/flags/demo_toy_budgets.json")).read())
    assert {m["budget"] for m in models} == set(budgets)
    for m in models:
        assert REPORT_FIELDS <= set(m), sorted(REPORT_FIELDS - set(m))
        model_bytes = (out / m["tflite"]).read_bytes()
        assert len(model_bytes) == m["size_bytes"]
        op_report.check_builtin_only(model_bytes)
        side = sidecar.load_sidecar(str(out / m["sidecar"]))
        assert side["quantization"] == m["quantization"] and side["subnet"] == m["subnet"]
        assert os.path.exists(out / os.path.dirname(m["tflite"]) / side["tokenizer_file"])
        assert m["params"] <= budgets[m["budget"]].get("max_params", float("inf"))
        assert m["wer"] >= 0 and 0 < m["rtf"] < 1 and 0 < m["latency_ms_median"] <= m["latency_ms_p90"]
        assert set(m["wer_per_domain"]) == {"command", "open"}
    # int16x8 joins a phone bundle exactly when its full-int8 WER exceeds the ratio x float32 WER.
    from tf_todm.export.evaluate import needs_int16x8
    ratio = report["int16x8_when_int8_ratio"]
    for budget in {m["budget"] for m in models if m["target"] == "phone"}:
        wers = {m["quantization"]: m["wer"] for m in models if m["budget"] == budget and m["decoding"] == "greedy"}
        base = {k: v for k, v in wers.items() if k != "int16x8"}
        assert ("int16x8" in wers) == needs_int16x8(base, ratio), (budget, wers)
        # every phone model is also evaluated with beam search and the token LM its bundle ships
        with_lm = {m["quantization"] for m in models if m["budget"] == budget and m["decoding"] != "greedy"}
        assert with_lm == set(wers), (budget, with_lm)
        side = sidecar.load_sidecar(str(out / next(m["sidecar"] for m in models if m["budget"] == budget)))
        assert side["lm"]["beam_size"] == 4 and (out / "bundles" / budget / side["lm"]["file"]).stat().st_size > 0
    # the shipped LM is fitted on the corpus's train text: every spoken train sentence and more
    from tf_todm.data.manifest import read_manifest
    spoken = {u.text for u in read_manifest(str(out / "corpus" / "train.jsonl"))}
    assert report["lm"]["fitted_on"] == "corpus train text"
    assert report["lm"]["sentences"] > len(spoken), (report["lm"], len(spoken))
    assert report["lm"]["length_bonus"] == side["lm"]["length_bonus"]
    assert not any(m["decoding"] != "greedy" for m in models if m["target"] == "mcu")
    mcu = [m for m in models if m["target"] == "mcu"]
    assert mcu and all(m["quantization"] == "full_int8" for m in mcu)
    for info in mcu[0]["mcu"].values():
        assert info["arena_bytes"] > 0
        op_report.check_tflm_compatible((out / os.path.dirname(mcu[0]["tflite"]) / info["file"]).read_bytes())
    for png in ("pareto.png", "deploy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    search = json.loads((out / "search.json").read_text())
    assert set(search["budgets"]) == set(budgets)
    assert "=== report ===" in proc.stdout and "mcu.full_int8" in proc.stdout
