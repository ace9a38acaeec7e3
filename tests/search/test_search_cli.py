"""experiments.search and experiments.benchmark_search end to end on the toy evaluator (in process)."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from experiments import benchmark_search, fit_evaluation_cost
from experiments import search as search_cli
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.cost_model import AnalyticCostModel
from tf_todm.search.toy import toy_model_config

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # --import-mode=importlib
import bad_input_fixtures as F  # noqa: E402

from tf_todm.data.tokenizer import Tokenizer  # noqa: E402
from tf_todm.models.config import TransducerConfig  # noqa: E402
from tf_todm.models.transducer import Transducer  # noqa: E402
from tf_todm.training.checkpoints import Checkpointer, TrainState  # noqa: E402


def _run(module, argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog"] + argv)
    try:
        return module.main(["prog"])
    finally:
        flags.FLAGS.unparse_flags()


@pytest.fixture
def budgets_file(tmp_path):
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"watch": {"max_params": 250000},
                                "phone": {"max_params": 450000, "max_macs_per_s": 1.3e7}}))
    return str(path)


def test_search_writes_json_and_plot(tmp_path, budgets_file, capsys):
    out = tmp_path / "out"
    argv = ["--evaluator=toy", f"--budgets={budgets_file}", f"--out={out}", "--cycles=20", "--population=6",
            "--tournament=2", "--seed=3"]
    assert _run(search_cli, argv) == 0
    data = json.loads((out / "search.json").read_text())
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "watch" in capsys.readouterr().out
    costs = AnalyticCostModel(toy_model_config())
    space = SearchSpace.from_dict(data["settings"]["space"])
    for name, limits in (("watch", {"params": 250000}), ("phone", {"params": 450000, "macs_per_s": 1.3e7})):
        chosen = data["budgets"][name]
        config = SubnetConfig.from_dict(chosen["config"])
        assert space.contains(config)
        assert costs(config).to_dict() == chosen["costs"]  # costs recomputed independently
        for field, limit in limits.items():
            assert chosen["costs"][field] <= limit
        # the chosen subnet is the best evaluated one within its budget
        feasible = [p for p in data["evaluated"] if all(p[f] <= v for f, v in limits.items())]
        assert chosen["wer"] == min(p["wer"] for p in feasible)
    front = data["pareto_front"]["params"]
    assert [p["params"] for p in front] == sorted(p["params"] for p in front)
    assert all(a["wer"] > b["wer"] for a, b in zip(front, front[1:]))
    assert "macs_per_s" in data["pareto_front"]  # no latency model -> MACs front
    # same seed, same answer
    assert _run(search_cli, argv[:2] + [f"--out={tmp_path / 'again'}"] + argv[3:]) == 0
    again = json.loads((tmp_path / "again" / "search.json").read_text())
    assert again["budgets"]["watch"]["config"] == data["budgets"]["watch"]["config"]
    assert again["evaluated"] == data["evaluated"]


def test_search_user_errors_exit_1_with_one_line(tmp_path, budgets_file, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"watch": {"max_param": 5}}))
    assert _run(search_cli, ["--evaluator=toy", f"--budgets={bad}", f"--out={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}: budget 'watch' has unknown key 'max_param' (expected one of " \
                  "['max_params', 'max_macs_per_s', 'max_int8_bytes', 'max_latency_ms_per_s_audio'])"
    impossible = tmp_path / "impossible.json"
    impossible.write_text(json.dumps({"tiny": {"max_params": 10}}))
    assert _run(search_cli, ["--evaluator=toy", f"--budgets={impossible}", f"--out={tmp_path}"]) == 1
    assert "budget 'tiny' is impossible" in capsys.readouterr().err
    assert _run(search_cli, [f"--budgets={budgets_file}", f"--out={tmp_path}"]) == 1
    assert "--checkpoint is required" in capsys.readouterr().err
    assert _run(search_cli, [f"--budgets={budgets_file}", f"--out={tmp_path}", "--checkpoint=run",
                             "--dev_manifest=dev.jsonl"]) == 1
    assert "run/config.json: missing; expected a training run folder" in capsys.readouterr().err


def test_latency_cache_feeds_a_fitted_latency_budget(tmp_path, capsys):
    from tf_todm.search.cost_model import MeasuredLatency, macs_per_second
    from tf_todm.search.toy import toy_space

    config, space = toy_model_config(), toy_space()
    import numpy as np

    rng = np.random.default_rng(0)
    cache = MeasuredLatency(str(tmp_path / "lat.json"), lambda s: 1e-6 * macs_per_second(config, s) + 2.0)
    for _ in range(6):
        cache(space.sample(rng))
    budgets = tmp_path / "b.json"
    budgets.write_text(json.dumps({"rt": {"max_latency_ms_per_s_audio": 12.0}}))
    argv = ["--evaluator=toy", f"--budgets={budgets}", f"--out={tmp_path / 'o'}", "--cycles=10",
            "--population=4", "--tournament=2", f"--latency_cache={tmp_path / 'lat.json'}"]
    assert _run(search_cli, argv) == 0
    data = json.loads((tmp_path / "o" / "search.json").read_text())
    chosen = data["budgets"]["rt"]
    assert chosen["costs"]["latency_ms_per_s_audio"] <= 12.0
    assert chosen["costs"]["latency_ms_per_s_audio"] == pytest.approx(
        1e-6 * chosen["costs"]["macs_per_s"] + 2.0, rel=1e-6)
    assert data["settings"]["latency_fit"]["mean_abs_pct_error"] < 1e-6
    assert "latency_ms_per_s_audio" in data["pareto_front"]


def test_predictor_guided_search_from_the_cli(tmp_path, budgets_file, capsys):
    out = tmp_path / "out"
    argv = ["--evaluator=toy", f"--budgets={budgets_file}", f"--out={out}", "--predictor_initial=8",
            "--predictor_rounds=2", "--predictor_per_round=3", "--predictor_pool=200", "--seed=1"]
    assert _run(search_cli, argv) == 0
    data = json.loads((out / "search.json").read_text())
    assert data["settings"]["predictor"] == {"initial": 8, "rounds": 2, "per_round": 3, "pool": 200,
                                             "stratify_depth": False, "per_position": False, "cost_cap": 0.0,
                                             "reference_samples": 50}
    assert data["budgets"]["watch"]["num_evaluations"] == 8 + 2 * 3  # the first budget: no cache hits
    for name, limit in (("watch", 250000), ("phone", 450000)):
        chosen = data["budgets"][name]
        assert "leave_one_out_rank_correlation" in chosen["predictor"]
        feasible = [p["wer"] for p in data["evaluated"] if p["params"] <= limit
                    and (name == "watch" or p["macs_per_s"] <= 1.3e7)]
        assert chosen["wer"] == min(feasible) and chosen["costs"]["params"] <= limit
    bench = tmp_path / "bench.json"
    assert _run(benchmark_search, ["--evaluator=toy", f"--out={bench}", "--seeds=0", "--random_samples=10",
                                   "--predictor_initial=6", "--predictor_rounds=1", "--predictor_per_round=2",
                                   "--predictor_pool=100"]) == 0
    rows = json.loads(bench.read_text())["rows"]
    assert all(r["search"]["evaluations"] == 8 and "predictor" in r["search"] for r in rows)
    # the cost cap is relative to the benchmark's own random baseline (10 subnets here, not 50)
    assert _run(benchmark_search, ["--evaluator=toy", f"--out={bench}", "--seeds=0", "--random_samples=10",
                                   "--predictor_initial=6", "--predictor_rounds=3", "--predictor_per_round=2",
                                   "--predictor_pool=100", "--predictor_cost_cap=0.5"]) == 0
    for row in json.loads(bench.read_text())["rows"]:
        cost = row["search"]["predictor"]["cost"]
        assert 10 * 2.7 <= cost["reference"] <= 10 * 7.7 and cost["cap"] == pytest.approx(0.5 * cost["reference"])
        assert cost["spent"] <= cost["cap"] and cost["stopped_by_cap"]
        assert row["search"]["evaluations"] < 12
    capsys.readouterr()
    assert _run(search_cli, argv + ["--screen_dev_batches=2"]) == 1
    assert capsys.readouterr().err.strip() == ("error: --predictor_initial and --screen_dev_batches are two "
                                               "different searches; give one")


def test_benchmark_writes_result(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--evaluator=toy", f"--out={out}", "--seeds=0", "--random_samples=12", "--max_evaluations=8",
            "--population=4", "--tournament=2"]
    assert _run(benchmark_search, argv) == 0
    result = json.loads(out.read_text())
    assert result["runs"] == 3 and len(result["rows"]) == 3
    for row in result["rows"]:
        assert row["search"]["evaluations"] == 8 and row["random"]["evaluations"] == 12
        assert row["search_at_least_as_good"] == (row["search"]["best_wer"] <= row["random"]["best_wer"])
    assert "search >= random in" in capsys.readouterr().out


def test_benchmark_reports_the_latency_fit(tmp_path, capsys):
    import numpy as np

    from tf_todm.search.cost_model import MeasuredLatency, macs_per_second
    from tf_todm.search.toy import toy_space

    config, space = toy_model_config(), toy_space()
    rng = np.random.default_rng(1)
    noise = iter(1 + 0.1 * rng.standard_normal(8))
    cache = MeasuredLatency(str(tmp_path / "lat.json"),
                            lambda s: (1e-6 * macs_per_second(config, s) + 2.0) * next(noise))
    for _ in range(8):
        cache(space.sample(rng))
    budgets = tmp_path / "b.json"
    budgets.write_text(json.dumps({"rt": {"max_latency_ms_per_s_audio": 15.0}}))
    out = tmp_path / "bench.json"
    argv = ["--evaluator=toy", f"--out={out}", "--seeds=0", "--random_samples=6", "--max_evaluations=5",
            "--population=3", "--tournament=2", f"--budgets={budgets}", f"--latency_cache={tmp_path / 'lat.json'}"]
    assert _run(benchmark_search, argv) == 0
    fit = json.loads(out.read_text())["latency_fit"]
    assert fit["num_samples"] == 8 and len(fit["samples"]) == 8
    assert fit["leave_one_out_pct_error"] > fit["mean_abs_pct_error"] > 1.0  # 10 % noise is visible
    assert "leave-one-out" in capsys.readouterr().out


def _real_run_folder(tmp_path):
    """A tiny untrained BatchNorm supernet saved as a run folder by the trainer's Checkpointer, a
    real SentencePiece model, real-audio dev/train manifests and a one-budget file."""
    tokenizer_path = F.tiny_tokenizer(str(tmp_path))
    tokenizer = Tokenizer(tokenizer_path)
    config = TransducerConfig(model_dim=16, num_blocks=2, ff_dim=24, num_heads=2, conv_dim=12,
                              conv_kernel_size=3, subsampling_channels=4, predictor_dim=12,
                              joiner_dim=16, vocab_size=tokenizer.vocab_size, dropout=0.0,
                              conv_norm="batch")
    tf.keras.utils.set_random_seed(0)
    model = Transducer(config)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tokenizer_path, run / "tokenizer.model")
    (run / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": {}}))
    features = tf.zeros([1, 16, config.input_dim])
    model.encode(features, tf.constant([16]))  # create the weights
    # Blank made unlikely and word-initial pieces likely: the random model then emits words, and
    # WERs differ between subnets and between the dev slice and the whole dev set (an untrained
    # model emits nothing, or one long word: 100% everywhere).
    bias = np.zeros(tokenizer.vocab_size, np.float32)
    bias[0] = -3.0
    bias[[i for i in range(tokenizer.vocab_size) if tokenizer.id_to_piece(i).startswith("\u2581")]] = 2.0
    model.joiner.output_dense.bias.assign(bias)
    Checkpointer(str(run / "ckpt"), model, None, TrainState()).save()
    dev = F.good_manifest(str(tmp_path), "dev.jsonl", num=6)
    train = F.good_manifest(str(tmp_path), "train.jsonl", num=4)
    budgets = tmp_path / "budgets.json"
    budgets.write_text(json.dumps({"all": {}}))
    return run, dev, train, budgets


def test_two_fidelity_search_of_a_real_run_folder(tmp_path, capsys):
    """experiments.search --screen_dev_batches on a (tiny, untrained) BatchNorm supernet saved by the
    trainer's Checkpointer, with real audio and a real SentencePiece model: the evolution screens on
    one dev batch and one calibration batch; each budget's winner is its best finalist, and the
    WER reported for it is the whole-dev-set WER (re-computed here by a fresh full evaluator)."""
    run, dev, train, budgets = _real_run_folder(tmp_path)
    out = tmp_path / "out"
    argv = [f"--checkpoint={run}", f"--dev_manifest={dev}", f"--calibration_manifest={train}",
            f"--budgets={budgets}", f"--out={out}", "--batch_size=2", "--population=3",
            "--tournament=2", "--cycles=3", "--screen_dev_batches=1",
            "--screen_calibration_batches=1", "--finalists=2"]
    assert _run(search_cli, argv) == 0
    data = json.loads((out / "search.json").read_text())
    chosen = data["budgets"]["all"]
    assert chosen["num_evaluations"] == 2 and chosen["num_screenings"] >= 4
    assert len(data["evaluated"]) == 2 and len(data["screened"]) == chosen["num_screenings"]
    assert chosen["wer"] == min(p["wer"] for p in data["evaluated"])
    # The finalists are the two best screened subnets.
    ranked = sorted(data["screened"], key=lambda p: (p["wer"], p["params"], p["key"]))
    assert {p["key"] for p in data["evaluated"]} == {p["key"] for p in ranked[:2]}
    assert data["settings"]["screen_dev_batches"] == 1 and data["settings"]["finalists"] == 2
    setup = search_cli.build_setup("supernet", checkpoint=str(run), dev_manifest=dev, batch_size=2,
                                   calibration_manifest=train)
    full = setup["evaluator"].evaluate(SubnetConfig.from_dict(chosen["config"]))
    assert chosen["wer"] == pytest.approx(full)
    assert "screens" in capsys.readouterr().out
    screened_wer = {p["key"]: p["wer"] for p in data["screened"]}[chosen["key"]]
    assert chosen["wer"] != screened_wer  # (this model's slice and whole-set WERs differ)


def test_benchmark_rescores_both_picks_on_held_out_data(tmp_path, capsys):
    """benchmark_search --heldout_manifest: each method's pick is re-scored on the held-out
    manifest, and the reported held-out WERs are a fresh evaluator's on that manifest."""
    run, dev, train, budgets = _real_run_folder(tmp_path)
    heldout = F.good_manifest(str(tmp_path / "heldout"), "test.jsonl", num=4)
    out = tmp_path / "bench.json"
    argv = ["--evaluator=supernet", f"--checkpoint={run}", f"--dev_manifest={dev}",
            f"--calibration_manifest={train}", f"--heldout_manifest={heldout}", f"--budgets={budgets}",
            f"--out={out}", "--batch_size=2", "--population=2", "--tournament=2", "--cycles=1",
            "--random_samples=3", "--max_evaluations=2", "--seeds=0"]
    assert _run(benchmark_search, argv) == 0
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    setup = search_cli.build_setup("supernet", checkpoint=str(run), dev_manifest=heldout, batch_size=2,
                                   calibration_manifest=train)
    for side in ("search", "random"):
        config = SubnetConfig.from_dict(row[side]["config"])
        assert row[side]["heldout_wer"] == pytest.approx(setup["evaluator"].evaluate(config))
    assert row["search_at_least_as_good_heldout"] == (row["search"]["heldout_wer"] <= row["random"]["heldout_wer"])
    assert data["search_at_least_as_good_heldout"] == int(row["search_at_least_as_good_heldout"])
    assert data["heldout_manifest"] == heldout
    assert "on held-out data search >= random in" in capsys.readouterr().out


def test_evaluation_cost_fit_recovers_a_known_cost_and_predicts_the_time_ratio(tmp_path, capsys):
    rng = np.random.default_rng(0)

    def side(n, seconds_per_eval=0.9, seconds_per_block=0.5, noise=0.0):
        blocks = rng.integers(2, 7, size=n)
        seconds = seconds_per_eval * n + seconds_per_block * blocks.sum()
        return {"evaluated": [{"config": {"num_blocks": int(b)}, "params": 1000 * int(b) + 7} for b in blocks],
                "evaluation_time_s": float(seconds * (1 + noise))}

    rows = [{"budget": f"b{i}", "seed": i, "search": side(30 + i), "random": side(50)} for i in range(4)]
    bench, out = tmp_path / "bench.json", tmp_path / "fit.json"
    bench.write_text(json.dumps({"rows": rows}))
    assert _run(fit_evaluation_cost, [f"--bench_json={bench}", f"--cost_fit_json={out}"]) == 0
    result = json.loads(out.read_text())
    assert result["fit"]["seconds_per_evaluation"] == pytest.approx(0.9)
    assert result["fit"]["seconds_per_block"] == pytest.approx(0.5)
    assert result["fit"]["overhead_blocks"] == pytest.approx(1.8) and result["fit"]["r2"] == pytest.approx(1.0)
    for row, r in zip(result["rows"], rows):  # exact model: the predicted ratio is the measured one
        assert row["model_ratio"] == pytest.approx(r["search"]["evaluation_time_s"] / r["random"]["evaluation_time_s"])
    assert result["max_ratio_error"] < 1e-9 and "R^2 1.000" in capsys.readouterr().out
    # a noisy side shows up as error; rows without evaluated subnets are refused by name
    rows[0]["search"] = side(30, noise=0.2)
    bench.write_text(json.dumps({"rows": rows}))
    assert _run(fit_evaluation_cost, [f"--bench_json={bench}", f"--cost_fit_json={out}"]) == 0
    assert json.loads(out.read_text())["fit"]["max_relative_error"] > 0.05
    del rows[1]["random"]["evaluated"]
    bench.write_text(json.dumps({"rows": rows}))
    capsys.readouterr()
    assert _run(fit_evaluation_cost, [f"--bench_json={bench}", f"--cost_fit_json={out}"]) == 1
    assert "row b1/1 stores no evaluated subnets" in capsys.readouterr().err
