"""Training recipes: one declarative recipe per zoo entry, and the ``tf.distribute`` trainer."""

from medzoo.recipes.catalog import RECIPES, get_recipe
from medzoo.recipes.recipe import DATASETS, Recipe
from medzoo.recipes.train import TrainResult, train

__all__ = ["DATASETS", "RECIPES", "Recipe", "TrainResult", "get_recipe", "train"]
