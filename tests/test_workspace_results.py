"""experiments.workspace_results: glob sections and the probe table's reproducing commands."""

import json

from experiments import workspace_results as wr


def _probe(path, steps, **settings):
    base = {"encoder": "conformer", "train_manifest": "m.jsonl", "num_utterances": 400, "steps": steps[-1],
            "learning_rate": 0.001, "normalization": "global", "batch_size": 16}
    base.update(settings)
    curve = [{"step": s, "loss": 3.0 - s / 1000, "train_wer": 1.0, "dev_wer": 0.9, "seconds": s / 10}
             for s in steps]
    path.write_text(json.dumps({"settings": base, "curve": curve}))


def test_load_json_glob_keys_by_stem_and_none_when_missing(tmp_path):
    assert wr.load_json(str(tmp_path / "plateau_*.json")) is None
    assert wr.load_json(str(tmp_path / "missing.json")) is None
    _probe(tmp_path / "plateau_b.json", [100])
    _probe(tmp_path / "plateau_a.json", [100])
    (tmp_path / "other.json").write_text("{}")
    runs = wr.load_json(str(tmp_path / "plateau_*.json"))
    assert sorted(runs) == ["plateau_a", "plateau_b"]
    assert runs["plateau_a"]["settings"]["encoder"] == "conformer"


def test_probe_command_names_only_changed_settings():
    settings = {"encoder": "bilstm", "num_utterances": 400, "steps": 600, "learning_rate": 0.001,
                "train_manifest": "m.jsonl", "normalization": "global", "bilstm_batch_norm": True,
                "batch_size": 16, "tokenizer": "t.model"}
    command = wr.probe_command("plateau_x", settings)
    assert command.startswith("python -m experiments.probe_ctc_plateau --encoder=bilstm --num_utterances=400 "
                              "--steps=600 --learning_rate=0.001 --train_manifest=m.jsonl")
    assert "--bilstm_batch_norm=True" in command and "--tokenizer=t.model" in command
    assert "--normalization" not in command and "--batch_size" not in command
    assert command.endswith("--output_json=artifacts/probe/plateau_x.json")


def test_plateau_table_has_one_row_per_run_with_losses_at_their_steps(tmp_path):
    _probe(tmp_path / "plateau_a.json", [100, 200])
    _probe(tmp_path / "plateau_b.json", [100, 200, 300], normalization="utterance")
    rows = wr.plateau_probes(wr.load_json(str(tmp_path / "plateau_*.json")))
    row_a = next(r for r in rows if r.startswith("| plateau_a |"))
    row_b = next(r for r in rows if r.startswith("| plateau_b |"))
    cells_a = [c.strip() for c in row_a.split("|")[1:-1]]
    assert cells_a[5:8] == ["2.90", "2.80", ""]  # loss@100, @200, (no @300)
    assert cells_a[-3:] == ["2.80 (step 200)", "100.0", "90.0"]
    assert "normalization=utterance" in row_b and "normalization" not in row_a
