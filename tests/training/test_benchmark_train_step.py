"""experiments.benchmark_train_step on the tiny real corpus: both variants time the same steps
and agree on the losses; a bad variant is a one-line error."""
import json


def test_both_variants_time_the_same_steps_with_equal_losses(run_module, tiny_corpus, tmp_path):
    out = tmp_path / "train_step.json"
    proc = run_module(["experiments.benchmark_train_step", "--flagfile=experiments/flags/supernet_tiny.cfg",
                       f"--train_manifest={tiny_corpus['train_manifest']}",
                       f"--dev_manifest={tiny_corpus['dev_manifest']}",
                       f"--tokenizer={tiny_corpus['tokenizer_path']}", "--model=num_blocks=1",
                       "--num_batches=3", f"--output_json={out}"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    xla, plain = result["variants"]["xla"], result["variants"]["tf"]
    assert (xla["xla_loss"], plain["xla_loss"]) == (True, False)
    assert xla["steps"] == plain["steps"] == 3
    assert xla["audio_seconds"] == plain["audio_seconds"] > 0
    for a, b in zip(xla["losses"], plain["losses"]):
        assert abs(a - b) <= 1e-3 * max(abs(a), 1.0)
    assert result["speedup_total_tf_over_xla"] == plain["total_s"] / xla["total_s"]


def test_unknown_variant_is_one_line_exit_1(run_module, tiny_corpus):
    proc = run_module(["experiments.benchmark_train_step", "--flagfile=experiments/flags/supernet_tiny.cfg",
                       f"--tokenizer={tiny_corpus['tokenizer_path']}", "--variants=xla,fast"], timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: --variants: unknown ['fast']; expected some of ['xla', 'tf', 'default']"
