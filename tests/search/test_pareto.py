import numpy as np
import pytest

from tf_todm.search.pareto import best_per_bucket, pareto_front, plot_pareto


def _brute_force(points, keys):
    front = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] <= p[k] for k in keys) and any(q[k] < p[k] for k in keys)
                        for q in points)
        duplicate_of_earlier = any(all(points[j][k] == p[k] for k in keys) for j in range(i))
        if not dominated and not duplicate_of_earlier:
            front.append(i)
    return front


@pytest.mark.parametrize("x_keys", [["params"], ["params", "latency_ms_per_s_audio"]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_matches_brute_force(x_keys, seed):
    rng = np.random.default_rng(seed)
    # Small integer grids force ties and duplicates.
    points = [{"id": i, "params": int(rng.integers(0, 12)), "latency_ms_per_s_audio": int(rng.integers(0, 9)),
               "wer": int(rng.integers(0, 10)) / 10} for i in range(120)]
    got = sorted(p["id"] for p in pareto_front(points, x_keys))
    assert got == _brute_force(points, x_keys + ["wer"])
    front = pareto_front(points, x_keys)
    assert front == sorted(front, key=lambda p: tuple(p[k] for k in x_keys + ["wer"]))
    if x_keys == ["params"]:  # 1-D front: WER strictly falls as params rise
        assert all(a["params"] < b["params"] and a["wer"] > b["wer"] for a, b in zip(front, front[1:]))


def test_none_objectives_are_skipped_and_empty_is_empty():
    points = [{"params": 1, "wer": 0.5, "lat": None}, {"params": 2, "wer": 0.4, "lat": 3.0}]
    assert pareto_front(points, ["params", "lat"]) == [points[1]]
    assert pareto_front([], ["params"]) == []


def test_best_per_bucket():
    points = [{"params": p, "wer": w} for p, w in [(1, 0.5), (4, 0.3), (12, 0.4), (15, 0.2), (19, 0.6)]]
    assert best_per_bucket(points, "params", 10) == [points[1], points[3]]
    with pytest.raises(ValueError):
        best_per_bucket(points, "params", 0)


def test_plot_written(tmp_path):
    rng = np.random.default_rng(0)
    points = [{"params": float(p), "macs_per_s": float(3 * p), "latency_ms_per_s_audio": float(p / 7),
               "wer": float(w)} for p, w in zip(rng.uniform(1e5, 1e6, 40), rng.uniform(0.1, 0.5, 40))]
    out = tmp_path / "plots" / "pareto.png"
    plot_pareto(points, {"phone": points[3], "watch": points[7]}, str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    no_latency = [dict(p, latency_ms_per_s_audio=None) for p in points]
    plot_pareto(no_latency, {}, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").stat().st_size > 10_000
