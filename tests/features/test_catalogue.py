from pathlib import Path

from features.catalogue import CATALOGUE, FEATURE_NAMES, MONOTONE, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_names_are_unique_and_constraints_align():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert MONOTONE == [f.risk for f in CATALOGUE] and set(MONOTONE) <= {-1, 0, 1}


def test_readme_feature_reference_is_the_generated_one():
    assert markdown_table() in (ROOT / "README.md").read_text()
