"""Grid expansion: a mapping is a Cartesian product; a list of mappings is the union of theirs."""
import pytest

from actlab.launch.grid import expand_grid, grid_keys


def test_mapping_is_the_cartesian_product_in_key_order():
    assert expand_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


def test_list_of_sub_grids_is_their_union_in_order_each_point_once():
    grid = [{"method": ["finetune"], "method.lr": [0.01, 0.1]},
            {"method": ["replay"], "method.memory_size": [64, "full"]},
            {"method": ["finetune"], "method.lr": [0.01]}]          # a repeat of the first row
    assert expand_grid(grid) == [
        {"method": "finetune", "method.lr": 0.01}, {"method": "finetune", "method.lr": 0.1},
        {"method": "replay", "method.memory_size": 64}, {"method": "replay", "method.memory_size": "full"}]
    assert grid_keys(grid) == ["method", "method.lr", "method.memory_size"]


@pytest.mark.parametrize("grid, bad", [([{}], "grid[0]"), ([["a"]], "grid[0]"), ({"a": []}, "grid key `a`")])
def test_malformed_grids_name_the_entry(grid, bad):
    with pytest.raises(ValueError, match=bad.replace("[", r"\[").replace("]", r"\]")):
        expand_grid(grid)
