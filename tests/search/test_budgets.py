import json

import pytest

from tf_todm.search.budgets import Budget, BudgetError, load_budgets
from tf_todm.search.cost_model import Costs


def test_dict_and_list_forms_parse_to_the_same_budgets(tmp_path):
    as_dict = {"phone": {"max_params": 5_000_000, "max_latency_ms_per_s_audio": 40},
               "watch": {"max_int8_bytes": 2_000_000.0, "max_macs_per_s": 1.5e8}}
    as_list = [{"name": "phone", "max_params": 5_000_000, "max_latency_ms_per_s_audio": 40},
               {"name": "watch", "max_int8_bytes": 2_000_000, "max_macs_per_s": 1.5e8}]
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps(as_dict))
    expected = [Budget("phone", max_params=5_000_000, max_latency_ms_per_s_audio=40.0),
                Budget("watch", max_macs_per_s=1.5e8, max_int8_bytes=2_000_000)]
    assert load_budgets(as_dict) == expected
    assert load_budgets(as_list) == expected
    assert load_budgets(str(path)) == expected
    assert isinstance(load_budgets(as_dict)[1].max_int8_bytes, int)


@pytest.mark.parametrize("data, fragment", [
    ({"phone": {"max_parms": 5}}, "budget 'phone' has unknown key 'max_parms'"),
    ({"phone": {"max_params": 0}}, "budget 'phone' key 'max_params' must be > 0"),
    ({"phone": {"max_params": -3}}, "must be > 0"),
    ({"phone": {"max_latency_ms_per_s_audio": "fast"}}, "must be a positive number"),
    ({"phone": {"max_params": True}}, "must be a positive number"),
    ({"phone": {"max_params": 2.5}}, "must be an integer"),
    ({"phone": {"max_macs_per_s": float("inf")}}, "must be a positive number"),
    ([{"name": "a"}, {"name": "a"}], "duplicate budget name 'a'"),
    ([{"max_params": 3}], "must be an object with a \"name\""),
    ({}, "no budgets defined"),
    ({"phone": 5}, "must be an object of limits"),
    (7, "expected an object keyed by budget name"),
])
def test_bad_budgets_raise_one_line_errors(data, fragment):
    with pytest.raises(BudgetError, match=None) as info:
        load_budgets(data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"phone": {\n  "max_params": 3,\n}}')
    with pytest.raises(BudgetError, match=rf"{path}:3: invalid JSON"):
        load_budgets(str(path))
    with pytest.raises(BudgetError, match="cannot read budgets file"):
        load_budgets(str(tmp_path / "missing.json"))
    path.write_text(json.dumps({"phone": {"max_bytes": 3}}))
    with pytest.raises(BudgetError, match=rf"{path}: budget 'phone' has unknown key 'max_bytes'"):
        load_budgets(str(path))


def test_violations_and_missing_latency():
    budget = Budget("b", max_params=100, max_int8_bytes=50)
    assert budget.is_feasible(Costs(100, 1e6, 50))
    assert budget.violations(Costs(101, 1e6, 51)) == ["params=101 > 100", "int8_bytes=51 > 50"]
    with pytest.raises(ValueError, match="limits latency_ms_per_s_audio but the cost model gives no"):
        Budget("b", max_latency_ms_per_s_audio=3.0).violations(Costs(1, 1.0, 1, None))
    assert Budget("free").is_feasible(Costs(10**9, 1e12, 10**9, None))
