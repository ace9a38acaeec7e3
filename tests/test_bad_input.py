"""Every CLI meets bad input as a user would give it: exit code != 0, ONE error line naming the
file/line/flag and what was expected, and no traceback.

Each case is a real subprocess (`python -m experiments.<name> ...`). A CLI start costs ~10 s of
TensorFlow import on 2 cores, so the cases of one group are started together in a small thread
pool (a module fixture) and each test only checks its own result; the whole default group stays
under ~3 minutes. Cases that need a trained model or a longer run are in the `slow` group.

Kinds of bad input covered (see CASES): flags (bad value, unknown flag in a flagfile, unknown
config key), unwritable output folder, manifests (not JSON, missing field, bad duration, missing
audio path, empty transcript, unknown characters), audio (corrupt, empty file, no samples,
truncated, 8 kHz, stereo), budgets (unknown key, bad JSON, impossible), missing checkpoints,
a checkpoint from another config, a `.tflite` that is not a model, bad export mode.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import sys
from typing import Callable

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # --import-mode=importlib
import bad_input_fixtures as F  # noqa: E402

TINY_FLAGFILE = os.path.join(F.REPO, "experiments", "flags", "supernet_tiny.cfg")
PARALLEL_RUNS = 3


@dataclasses.dataclass
class Case:
    """One bad-input run: `build(root) -> (flags, needles)`; needles must all be in the error line."""

    id: str
    cli: str
    build: Callable[[str], tuple[list, list]]
    slow: bool = False
    xfail: str = ""  # reason, when the owner has been asked for a fix


# ------------------------------------------------------------------ builders


def _train_flags(root: str, train_manifest: str, *extra: str, tokenizer: str = "") -> list:
    good = os.path.join(root, "good")
    return [f"--flagfile={TINY_FLAGFILE}", f"--out_dir={os.path.join(root, 'run')}",
            f"--train_manifest={train_manifest}", f"--dev_manifest={os.path.join(good, 'dev.jsonl')}",
            f"--tokenizer={tokenizer or os.path.join(good, 'tok.model')}", *extra]


def _manifest_case(kind: str, needles_fn):
    def build(root):
        path, line = F.manifest_with_bad_line(root, kind)
        return _train_flags(root, path), needles_fn(path, line, root)
    return build


def _audio_case(kind: str, *expected: str, extra=()):
    def build(root):
        path, line = F.manifest_with_bad_line(root, kind)
        return _train_flags(root, path, *extra), [f"{path}:{line}", f"bad_{kind}.wav", *expected]
    return build


def _flagfile_unknown_flag(root):
    flagfile = F.write_flagfile(os.path.join(root, "bad.cfg"),
                                [f"--flagfile={TINY_FLAGFILE}", "--nonexistent_flag=3"])
    flags = _train_flags(root, os.path.join(root, "good", "train.jsonl"))
    flags[0] = f"--flagfile={flagfile}"
    return flags, ["nonexistent_flag"]


def _unknown_train_key(root):
    return _train_flags(root, os.path.join(root, "good", "train.jsonl"), "--train=batch_sise=2"), \
        ["batch_sise", "unknown key"]


def _bad_train_value(root):
    return _train_flags(root, os.path.join(root, "good", "train.jsonl"), "--train=batch_size=two"), \
        ["batch_size", "int"]


def _missing_manifest(root):
    path = os.path.join(root, "nowhere.jsonl")
    return _train_flags(root, path), [path, "does not exist"]


def _not_a_tokenizer(root):
    tok = os.path.join(root, "junk.model")
    with open(tok, "wb") as f:
        f.write(b"\x00\x01 not a sentencepiece proto" * 10)
    return _train_flags(root, os.path.join(root, "good", "train.jsonl"), tokenizer=tok), \
        [tok, "SentencePiece"]


def _bad_subnet_json(root):
    return _train_flags(root, os.path.join(root, "good", "train.jsonl"), "--subnet={num_blocks: 2"), \
        ["--subnet", "JSON"]


def _make_corpus_unwritable(root):
    # A path below a regular file can never be created, even by root.
    blocker = os.path.join(root, "a_file")
    open(blocker, "w").close()
    out = os.path.join(blocker, "corpus")
    return [f"--out_dir={out}", "--hours=0.001", "--num_workers=1", "--noprogress"], [out]


def _budgets(root, obj, name="budgets.json"):
    path = os.path.join(root, name)
    if isinstance(obj, str):
        with open(path, "w") as f:
            f.write(obj)
    else:
        F.write_json(path, obj)
    return path


def _search_unknown_key(root):
    path = _budgets(root, {"phone": {"max_params": 400000, "max_flops": 3}})
    return ["--evaluator=toy", f"--budgets={path}", f"--out={root}/out"], [path, "max_flops", "unknown key"]


def _search_bad_json(root):
    path = _budgets(root, '{"phone": {"max_params": 400000,\n')
    return ["--evaluator=toy", f"--budgets={path}", f"--out={root}/out"], [path, "JSON"]


def _search_impossible(root):
    path = _budgets(root, {"phone": {"max_params": 1}})
    return ["--evaluator=toy", f"--budgets={path}", f"--out={root}/out", "--cycles=2", "--population=4"], \
        ["phone", "impossible", "params"]


def _search_missing_checkpoint(root):
    budgets = _budgets(root, {"phone": {"max_params": 400000}})
    ckpt = os.path.join(root, "no_such_run")
    return [f"--checkpoint={ckpt}", f"--budgets={budgets}", f"--out={root}/out",
            f"--dev_manifest={os.path.join(root, 'good', 'dev.jsonl')}"], [ckpt, "missing"]


def _export_missing_checkpoint(root):
    ckpt = os.path.join(root, "no_such_run")
    return [f"--checkpoint={ckpt}", '--subnet_json={"num_blocks": 1}', "--mode=float32",
            f"--out_dir={root}/out"], [ckpt, "not found"]


def _export_bad_mode(root):
    return [f"--checkpoint={root}/no_such_run", "--mode=int3", f"--out_dir={root}/out"], ["--mode", "int3", "float32"]


def _tflite_not_a_model(root):
    model = F.not_a_tflite(os.path.join(root, "model.tflite"))
    F.write_json(os.path.join(root, "model.json"), {"sample_rate_hz": 16000})
    return [f"--model={model}", f"--manifest={root}/good/dev.jsonl", f"--output_json={root}/r.json"], \
        [model, "TFLite", "TFL3"]


CASES = [
    # make_corpus
    Case("make_corpus/hours_negative", "make_corpus",
         lambda r: ([f"--out_dir={r}/c", "--hours=-1"], ["hours", "positive"])),
    Case("make_corpus/hours_nan", "make_corpus",
         lambda r: ([f"--out_dir={r}/c", "--hours=nan"], ["hours", "positive"]), slow=True),
    Case("make_corpus/hours_not_a_number", "make_corpus",
         lambda r: ([f"--out_dir={r}/c", "--hours=lots"], ["hours", "lots"]), slow=True),
    Case("make_corpus/unwritable_out_dir", "make_corpus", _make_corpus_unwritable),
    # train_supernet: manifests
    Case("train_supernet/manifest_not_json", "train_supernet",
         _manifest_case("not_json", lambda p, n, r: [f"{p}:{n}", "JSON"])),
    Case("train_supernet/manifest_missing_field", "train_supernet",
         _manifest_case("missing_field", lambda p, n, r: [f"{p}:{n}", "text"])),
    Case("train_supernet/manifest_bad_duration", "train_supernet",
         _manifest_case("bad_duration", lambda p, n, r: [f"{p}:{n}", "duration"]), slow=True),
    Case("train_supernet/manifest_missing", "train_supernet", _missing_manifest, slow=True),
    Case("train_supernet/audio_path_missing", "train_supernet",
         _manifest_case("missing_path", lambda p, n, r: [f"{p}:{n}", "does_not_exist.wav", "does not exist"])),
    Case("train_supernet/empty_transcript", "train_supernet",
         _manifest_case("empty_text", lambda p, n, r: [f"{p}:{n}", "utt2.wav", "empty text"])),
    Case("train_supernet/unknown_characters", "train_supernet",
         _manifest_case("unknown_chars", lambda p, n, r: [f"{p}:{n}", "utt2.wav", "not in the tokenizer"])),
    # train_supernet: audio
    Case("train_supernet/audio_corrupt", "train_supernet", _audio_case("corrupt", "not a readable audio")),
    Case("train_supernet/audio_empty_file", "train_supernet", _audio_case("empty_file"), slow=True),
    Case("train_supernet/audio_no_samples", "train_supernet", _audio_case("no_samples", "samples"), slow=True),
    Case("train_supernet/audio_truncated", "train_supernet",
         _audio_case("truncated", "truncated", extra=("--train=max_steps=1", "--train=num_epochs=1")), slow=True),
    Case("train_supernet/audio_8khz", "train_supernet", _audio_case("rate_8k", "8000", "16000")),
    Case("train_supernet/audio_stereo", "train_supernet", _audio_case("stereo", "channels", "mono"), slow=True),
    # train_*: flags and config
    Case("train_supernet/flagfile_unknown_flag", "train_supernet", _flagfile_unknown_flag),
    Case("train_supernet/unknown_train_key", "train_supernet", _unknown_train_key, slow=True),
    Case("train_single/bad_train_value", "train_single", _bad_train_value, slow=True),
    Case("train_single/flagfile_unknown_flag", "train_single", _flagfile_unknown_flag, slow=True),
    Case("train_single/bad_subnet_json", "train_single", _bad_subnet_json, slow=True),
    Case("train_single/not_a_tokenizer", "train_single", _not_a_tokenizer, slow=True),
    # search
    Case("search/budget_unknown_key", "search", _search_unknown_key),
    Case("search/budget_bad_json", "search", _search_bad_json, slow=True),
    Case("search/budget_impossible", "search", _search_impossible),
    Case("search/missing_checkpoint", "search", _search_missing_checkpoint),
    # export / evaluate_tflite
    Case("export/missing_checkpoint", "export", _export_missing_checkpoint),
    Case("export/bad_mode", "export", _export_bad_mode, slow=True),
    Case("evaluate_tflite/not_a_model", "evaluate_tflite", _tflite_not_a_model),
]


def _prepare_root(base: str, case: Case) -> str:
    root = os.path.join(base, case.id.replace("/", "__"))
    os.makedirs(root)
    good = os.path.join(root, "good")
    os.makedirs(good)
    F.good_manifest(good, "train.jsonl", num=6)
    F.good_manifest(good, "dev.jsonl", num=3)
    F.tiny_tokenizer(good)
    return root


def _run_group(tmp_path_factory, slow: bool) -> dict:
    base = str(tmp_path_factory.mktemp("slow" if slow else "fast"))
    jobs = {}
    for case in CASES:
        if case.slow != slow or not F.cli_exists(case.cli):
            continue
        root = _prepare_root(base, case)
        flags, needles = case.build(root)
        jobs[case.id] = (flags, needles)

    def one(case_id):
        flags, needles = jobs[case_id]
        cli = case_id.split("/")[0]
        try:
            return F.run_cli(cli, *flags, timeout=300), needles
        except Exception as e:  # timeout: reported by the test, not the fixture
            return e, needles

    with concurrent.futures.ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        return dict(zip(jobs, pool.map(one, list(jobs))))


@pytest.fixture(scope="module")
def fast_results(tmp_path_factory):
    return _run_group(tmp_path_factory, slow=False)


@pytest.fixture(scope="module")
def slow_results(tmp_path_factory):
    return _run_group(tmp_path_factory, slow=True)


def _check(results: dict, case: Case):
    if not F.cli_exists(case.cli):
        pytest.skip(f"experiments/{case.cli}.py does not exist")
    result, needles = results[case.id]
    if isinstance(result, Exception):
        pytest.fail(f"{case.id}: {type(result).__name__}: {result}")
    F.assert_one_line_error(result, *needles)


def _param(case: Case):
    marks = [pytest.mark.slow] if case.slow else []
    if case.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES if not c.slow])
def test_bad_input_fast(fast_results, case):
    _check(fast_results, case)


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.slow])
def test_bad_input_slow(slow_results, case):
    _check(slow_results, case)
