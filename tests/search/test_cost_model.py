import dataclasses
import json

import numpy as np
import pytest

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.models.param_count import count_params
from tf_todm.search.cost_model import (AnalyticCostModel, Costs, FittedLatencyModel, MeasuredLatency,
                                       fit_int8_size, macs_breakdown, macs_per_second)


def _Cfg(**changes):
    """Odd, distinct dims; 3 heads of width 4; subsampling channels differ from model_dim."""
    base = dict(input_dim=13, model_dim=12, num_blocks=3, ff_dim=17, num_heads=3, conv_dim=7,
                conv_kernel_size=5, subsampling_channels=5, predictor_type="lstm", predictor_dim=10,
                joiner_dim=9, vocab_size=7, chunk_size=4, left_context=6)
    base.update(changes)
    return TransducerConfig(**base)


SUBNET = SubnetConfig(3, (11, 17, 9), (1, 3, 2), (5, 7, 6), 10, 9)


class _Counted:
    """Forward pass in numpy on random data that counts the MACs of every product it runs and the
    size of every weight it creates: an independent reference for the analytic formulas."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.macs = 0
        self.params = 0

    def weight(self, *shape, bias=True):
        self.params += int(np.prod(shape)) + (shape[-1] if bias else 0)
        return 0.1 * self.rng.standard_normal(shape)

    def mm(self, a, b):
        self.macs += a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    def conv2d_valid_s2(self, x, w):  # x [T, F, Cin], w [3*3*Cin, Cout]
        t_out, f_out = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
        patches = np.stack([x[2 * t:2 * t + 3, 2 * f:2 * f + 3].reshape(-1)
                            for t in range(t_out) for f in range(f_out)])
        return self.mm(patches, w).reshape(t_out, f_out, -1)


def _reference(cfg, subnet, seconds, tokens_per_s=4.0):
    c = _Counted()
    d, dh, cs = cfg.model_dim, cfg.model_dim // cfg.num_heads, cfg.subsampling_channels
    x = c.rng.standard_normal((int(100 * seconds), cfg.input_dim, 1))
    x = c.conv2d_valid_s2(x, c.weight(9, cs))
    x = c.conv2d_valid_s2(x, c.weight(9 * cs, cs))
    x = c.mm(x.reshape(x.shape[0], -1), c.weight(x.shape[1] * cs, d))  # [T', D]
    t = x.shape[0]
    if cfg.chunk_size:
        q, k = np.arange(t)[:, None], np.arange(t)[None, :]
        start = (q // cfg.chunk_size) * cfg.chunk_size
        left = t if cfg.left_context is None else cfg.left_context
        allowed = (k >= start - left) & (k < start + cfg.chunk_size)
    else:
        allowed = np.ones((t, t), bool)
    for ff, h, conv in zip(subnet.ff_dims, subnet.num_heads, subnet.conv_dims):
        for _ in range(2):
            x = x + c.mm(np.tanh(c.mm(x, c.weight(d, ff))), c.weight(ff, d))
        qs, ks, vs = (c.mm(x, c.weight(d, h * dh)) for _ in range(3))
        heads = []
        for i in range(h):
            sl = slice(i * dh, (i + 1) * dh)
            scores = np.where(allowed, qs[:, sl] @ ks[:, sl].T, -np.inf)
            c.macs += 2 * int(allowed.sum()) * dh  # scores and weighted sum over allowed pairs only
            p = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append((p / p.sum(-1, keepdims=True)) @ vs[:, sl])
        x = x + c.mm(np.concatenate(heads, -1), c.weight(h * dh, d))
        g = c.mm(x, c.weight(d, 2 * conv))
        g = g[:, :conv] / (1 + np.exp(-g[:, conv:]))
        w_dw = c.weight(cfg.conv_kernel_size, conv)
        g = np.stack([np.convolve(g[:, j], w_dw[:, j], mode="same") for j in range(conv)], -1)
        c.macs += t * conv * cfg.conv_kernel_size
        x = x + c.mm(g, c.weight(conv, d))
    p_dim, j_dim = subnet.predictor_dim, subnet.joiner_dim
    emb = c.weight(cfg.vocab_size, p_dim, bias=False)
    tokens = int(round(tokens_per_s * seconds))
    hidden = np.zeros((1, p_dim))
    preds = []
    if cfg.predictor_type == "lstm":
        w_lstm = c.weight(2 * p_dim, 4 * p_dim)
        for u in range(tokens):
            z = c.mm(np.concatenate([emb[u % cfg.vocab_size][None], hidden], -1), w_lstm)
            hidden = np.tanh(z[:, :p_dim])
            preds.append(hidden)
    else:  # embedding + depthwise conv over the last `predictor_context` tokens
        w_ctx = c.weight(cfg.predictor_context, p_dim, bias=False)
        ids = np.arange(tokens + cfg.predictor_context) % cfg.vocab_size
        for u in range(tokens):
            window = emb[ids[u:u + cfg.predictor_context]]
            c.macs += window.size
            preds.append((window * w_ctx).sum(0, keepdims=True))
    enc_proj = c.mm(x, c.weight(d, j_dim))
    pred_proj = c.mm(np.concatenate(preds), c.weight(p_dim, j_dim))
    w_out = c.weight(j_dim, cfg.vocab_size)
    c.mm(np.tanh(np.concatenate([enc_proj, pred_proj])), w_out)  # one per frame + one per token
    return c.macs / seconds, t / seconds


@pytest.mark.parametrize("predictor_type", ["lstm", "stateless"])
def test_macs_match_a_counted_numpy_forward(predictor_type):
    cfg = _Cfg(predictor_type=predictor_type)
    seconds = 24.0
    ref_macs, frame_rate = _reference(cfg, SUBNET, seconds)
    assert frame_rate == pytest.approx(25.0, rel=0.01)
    # The reference loses edge frames to valid convolutions and early queries see fewer keys.
    assert macs_per_second(cfg, SUBNET, tokens_per_s=4.0) == pytest.approx(ref_macs, rel=0.015)


@pytest.mark.parametrize("chunk_size, left_context", [(None, None), (4, None)])
def test_unbounded_attention_uses_the_utterance_length(chunk_size, left_context):
    cfg = _Cfg(chunk_size=chunk_size, left_context=left_context)
    seconds = 6.0
    ref_macs, _ = _reference(cfg, SUBNET, seconds)
    assert macs_per_second(cfg, SUBNET, utterance_s=seconds) == pytest.approx(ref_macs, rel=0.015)
    # Full attention is quadratic: longer utterances cost more per second.
    assert (macs_breakdown(cfg, SUBNET, utterance_s=20.0)["encoder"]
            > macs_breakdown(cfg, SUBNET, utterance_s=5.0)["encoder"])


def test_macs_grow_with_every_dimension_and_stateless_is_cheaper():
    cfg = _Cfg()
    space = SearchSpace((2, 3), (9, 17), (1, 3), (5, 7), (6, 10), (5, 9))
    small, large = space.smallest(), space.largest()
    assert macs_per_second(cfg, small) < macs_per_second(cfg, large)
    for field in ("predictor_dim", "joiner_dim"):
        bigger = dataclasses.replace(small, **{field: getattr(large, field)})
        assert macs_per_second(cfg, bigger) > macs_per_second(cfg, small)
    stateless = _Cfg(predictor_type="stateless")
    assert (macs_breakdown(stateless, large)["predictor"] < macs_breakdown(cfg, large)["predictor"])


def test_int8_size_fit_recovers_slope_and_overhead():
    params = np.array([1e5, 3e5, 7e5, 1.2e6])
    sizes = 1.03 * params + 41_000
    slope, overhead = fit_int8_size(params, sizes)
    assert slope == pytest.approx(1.03, rel=1e-9)
    assert overhead == pytest.approx(41_000, rel=1e-6)
    with pytest.raises(ValueError, match=">= 2 paired samples"):
        fit_int8_size([1.0], [2.0])


def test_latency_fit_recovers_coefficients_and_reports_error():
    rng = np.random.default_rng(3)
    macs = rng.uniform(2e7, 4e8, size=40)
    params = rng.uniform(1e5, 2e7, size=40)
    exact = 1.7e-7 * macs + 4.0e-7 * params + 2.5
    model = FittedLatencyModel.fit(macs, params, exact)
    assert model.macs_coef == pytest.approx(1.7e-7, rel=1e-6)
    assert model.params_coef == pytest.approx(4.0e-7, rel=1e-6)
    assert model.intercept == pytest.approx(2.5, rel=1e-6)
    assert model.mean_abs_pct_error < 1e-6
    noisy = exact * (1 + 0.05 * rng.standard_normal(40))
    fitted = FittedLatencyModel.fit(macs, params, noisy)
    pred = np.array([fitted.predict(m, p) for m, p in zip(macs, params)])
    assert fitted.mean_abs_pct_error == pytest.approx(np.mean(np.abs(pred - noisy) / noisy) * 100)
    assert 1.0 < fitted.mean_abs_pct_error < 10.0
    assert FittedLatencyModel.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    # leave-one-out: exact data predicts each held-out sample exactly; noisy data does worse than
    # in-sample, and matches a direct computation
    assert FittedLatencyModel.leave_one_out_error(macs, params, exact) < 1e-6
    loo = FittedLatencyModel.leave_one_out_error(macs[:8], params[:8], noisy[:8])
    manual = []
    for i in range(8):
        keep = [j for j in range(8) if j != i]
        f = FittedLatencyModel.fit(macs[keep], params[keep], noisy[keep])
        manual.append(abs(f.predict(macs[i], params[i]) - noisy[i]) / noisy[i] * 100)
    assert loo == pytest.approx(np.mean(manual))
    assert loo > FittedLatencyModel.fit(macs[:8], params[:8], noisy[:8]).mean_abs_pct_error
    with pytest.raises(ValueError, match=">= 3 measured samples"):
        FittedLatencyModel.fit([1.0, 2.0], [1.0, 2.0], [1.0, 2.0])


def test_measured_latency_caches_on_disk_and_feeds_the_fit(tmp_path):
    cfg = _Cfg()
    space = SearchSpace((2, 3), (9, 17), (1, 3), (5, 7), (6, 10), (5, 9))
    params_fn = lambda s: count_params(cfg, s)  # noqa: E731
    calls = []

    def measure(subnet):  # a deterministic "device": linear in MACs and params
        calls.append(subnet.key())
        return 2e-6 * macs_per_second(cfg, subnet) + 1e-3 * params_fn(subnet) + 0.5

    path = tmp_path / "lat" / "latency.json"
    measured = MeasuredLatency(str(path), measure)
    rng = np.random.default_rng(0)
    subnets = [space.sample(rng) for _ in range(8)]
    first = [measured(s) for s in subnets]
    assert len(calls) == len({s.key() for s in subnets})
    reloaded = MeasuredLatency(str(path))  # read-only: answers from disk, never measures
    assert [reloaded(s) for s in subnets] == first
    assert len(calls) == len({s.key() for s in subnets})
    unseen = next(s for s in (space.sample(rng) for _ in range(100)) if s not in reloaded)
    with pytest.raises(KeyError, match="no latency measured"):
        reloaded(unseen)

    cost_model = AnalyticCostModel(cfg, params_fn=params_fn, latency=measured)
    fitted = FittedLatencyModel.fit_measured(measured, cost_model)
    assert fitted.mean_abs_pct_error < 1e-6
    assert fitted.macs_coef == pytest.approx(2e-6, rel=1e-6)
    fitted_costs = AnalyticCostModel(cfg, params_fn=params_fn, latency=fitted)(unseen)
    assert fitted_costs.latency_ms_per_s_audio == pytest.approx(measure(unseen), rel=1e-6)


def test_corrupt_latency_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "latency.json"
    path.write_text('{"entries": {"abc": {"config": {"num_blocks": 1}}}}')
    with pytest.raises(ValueError, match=rf"{path}: not a latency cache"):
        MeasuredLatency(str(path))


def test_analytic_cost_model_fields():
    cfg = _Cfg()
    model = AnalyticCostModel(cfg, int8_overhead_bytes=1000)  # default params_fn: count_params
    costs = model(SUBNET)
    assert costs == Costs(count_params(cfg, SUBNET), macs_per_second(cfg, SUBNET),
                          count_params(cfg, SUBNET) + 1000, None)
    halved = AnalyticCostModel(cfg, params_fn=lambda s: 7, int8_bytes_per_param=0.5, int8_overhead_bytes=2)
    assert halved(SUBNET).int8_bytes == 6 and halved(SUBNET).params == 7
