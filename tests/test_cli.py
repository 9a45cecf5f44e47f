from dataclasses import dataclass, field

import pytest

from ebyd_hf.cli import parse_recipe_args


@dataclass
class Args:
    dataset: str
    target: int = 0
    rate: float = 0.1
    options: dict = field(default_factory=dict)
    kinds: list[str] = field(default_factory=lambda: ["layernorm"])


RECIPE = """
dataset: runs/data
target: 1
unused_by_this_stage: 3
poison:
  rate: 0.2
  options: {words: [cf]}
defend:
  rate: 0.5
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return str(path)


def test_shared_keys_then_section_then_flags(recipe):
    (args,) = parse_recipe_args((Args,), "poison", ["--config", recipe])
    assert (args.dataset, args.target, args.rate, args.options) == ("runs/data", 1, 0.2, {"words": ["cf"]})
    (args,) = parse_recipe_args(
        (Args,), "defend", ["--config", recipe, "--target", "0", "--kinds", "a", "b", "--options", '{"x": 1}']
    )
    assert (args.target, args.rate, args.kinds, args.options) == (0, 0.5, ["a", "b"], {"x": 1})


def test_required_field_still_required_without_config():
    with pytest.raises(SystemExit):
        parse_recipe_args((Args,), "poison", [])


def test_typo_in_a_section_fails(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: x\npoison:\n  raet: 0.2\n")
    with pytest.raises(ValueError, match="unknown key.*raet"):
        parse_recipe_args((Args,), "poison", ["--config", str(path)])
