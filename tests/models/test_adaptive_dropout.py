"""adaptive_dropout_rate: linear in parameter count between the smallest and largest subnet."""

import pytest

from tf_todm.models import adaptive_dropout_rate


def test_endpoints_and_midpoint():
    assert adaptive_dropout_rate(1000, 1000, 200, 0.2, 0.05) == pytest.approx(0.2)
    assert adaptive_dropout_rate(200, 1000, 200, 0.2, 0.05) == pytest.approx(0.05)
    assert adaptive_dropout_rate(600, 1000, 200, 0.2, 0.05) == pytest.approx(0.125)
    assert adaptive_dropout_rate(400, 1000, 200, 0.2, 0.0) == pytest.approx(0.05)


def test_clipped_and_degenerate():
    assert adaptive_dropout_rate(5000, 1000, 200, 0.2, 0.05) == pytest.approx(0.2)
    assert adaptive_dropout_rate(0, 1000, 200, 0.2, 0.05) == pytest.approx(0.05)
    assert adaptive_dropout_rate(7, 7, 7, 0.3, 0.1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="max_params"):
        adaptive_dropout_rate(5, 1, 2, 0.3, 0.1)
