from pathlib import Path

from features.catalogue import CATALOGUE, FEATURE_NAMES, MONOTONE, reference_doc

ROOT = Path(__file__).resolve().parents[2]


def test_names_are_unique_and_constraints_align():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert MONOTONE == [f.risk if f.monotone else 0 for f in CATALOGUE] and set(MONOTONE) <= {-1, 0, 1}
    # the contract features are not held to their direction: prepaid share the cap of far-off contracts
    assert MONOTONE[FEATURE_NAMES.index("days_to_contract_end")] == 0


def test_docs_feature_reference_is_the_generated_one():
    assert (ROOT / "docs" / "features.md").read_text() == reference_doc()
    assert "docs/features.md" in (ROOT / "README.md").read_text()


def test_every_feature_states_its_meaning_unit_window_and_range():
    for f in CATALOGUE:
        assert f.meaning and f.unit and f.window and f.signal, f.name
        assert f.lo is None or f.hi is None or f.lo < f.hi, f.name
