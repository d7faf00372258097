"""The quickstart's embedded stages are the ones recipes/quickstart_*.yaml document (they must not drift)."""

from pathlib import Path

import yaml

from alignlab.train.quickstart import PREFERENCE_STAGE, SFT_STAGE

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_embedded_stages_equal_the_recipes():
    sft = yaml.safe_load((RECIPES / "quickstart_sft.yaml").read_text())
    pref = yaml.safe_load((RECIPES / "quickstart_tdpo2.yaml").read_text())
    assert sft == SFT_STAGE
    assert pref == PREFERENCE_STAGE  # the model key is set at run time to the SFT stage's final/
