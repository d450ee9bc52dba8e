"""However an export writes a dialled number, it classes and hashes as the clean export's number."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from messy_numbers import DAY, messy_export, messy_forms, raw_day

from core.io import PARTITION
from pipelines.errors import ValidationFailed
from pipelines.generate import _contact_pool
from pipelines.ingest import ingest
from pipelines.numbers import normalise_array, normalise_number, number_plan

CASES = {
    "+8613800138000": "13800138000",
    "8613800138000": "13800138000",
    "008613800138000": "13800138000",
    "138 0013 8000": "13800138000",
    "138-0013-8000": "13800138000",
    "013800138000": "13800138000",
    "(010) 1234 5678": "01012345678",
    "+86 (0)10 12345678": "01012345678",
    "0086 755 1234 5678": "075512345678",
    "+852 1234 5678": "0085212345678",
    "10086": "10086",
    "10000": "10000",
    "95533": "95533",
    "+86 10086": "10086",
    "12AB": "12AB",
}


@pytest.mark.parametrize("messy, clean", list(CASES.items()))
def test_a_number_is_normalised_to_its_domestic_form(messy, clean):
    assert normalise_array(pa.array([messy]), "CN").to_pylist() == [clean]


def test_every_messy_form_of_the_simulated_numbers_is_normalised_and_canonical_ones_kept(trained):
    pool = np.unique(_contact_pool(np.random.default_rng(3), trained.data, 300))
    clean = [c for c in pool for _ in messy_forms(c)]
    messy = [m for c in pool for m in messy_forms(c)]
    assert len(messy) > 5 * len(pool)
    assert normalise_array(pa.array(messy), "CN").to_pylist() == clean
    assert [normalise_number.__wrapped__(m, "CN") for m in messy] == clean  # parsing alone, no fast path
    # the fast path (no parsing) keeps only what parsing would keep as well
    assert [normalise_number.__wrapped__(c, "CN") for c in pool] == list(pool)
    assert pd.Series(list(pool)).str.fullmatch(number_plan("CN").canonical[1:-1]).all()


def test_a_messy_export_classes_and_hashes_as_the_clean_one(trained_copy):
    clean = raw_day(trained_copy)
    messy_export(trained_copy)
    summary = ingest(trained_copy)
    assert summary.partitions_ingested == 1  # the day's file changed, and only it
    pd.testing.assert_frame_equal(raw_day(trained_copy), clean)


def test_an_unknown_share_that_jumps_fails_naming_the_day(trained_copy):
    path = next((trained_copy.landing_dir / "cdr" / f"{PARTITION}={DAY}").glob("*.parquet"))
    calls = pd.read_parquet(path)
    before = (trained_copy.raw_dir / ".partitions.json").read_bytes()
    calls["other_party"] = calls["other_party"].astype(str).where(calls.index % 3 != 0, "tel:unknown")
    calls.to_parquet(path, index=False)
    with pytest.raises(ValidationFailed) as err:
        ingest(trained_copy, skip_validation=True)
    message = str(err.value)
    assert "[unknown_share]" in message and f"{DAY}: 33." in message and "fail above 2.0%" in message
    assert "[share_change] share of unknown calls 0.0% in the previous ingest, 33." in message
    assert "other_party" in message and str(trained_copy.landing_dir / "cdr") in message
    assert (trained_copy.raw_dir / ".partitions.json").read_bytes() == before  # data/raw as it was


def test_an_unknown_share_between_the_thresholds_warns(trained_copy, caplog):
    path = next((trained_copy.landing_dir / "cdr" / f"{PARTITION}={DAY}").glob("*.parquet"))
    calls = pd.read_parquet(path)
    calls["other_party"] = calls["other_party"].astype(str).where(calls.index % 100 != 0, "tel:unknown")
    calls.to_parquet(path, index=False)
    summary = ingest(trained_copy, skip_validation=True)
    assert summary.callee_classes["unknown"] == len(calls[calls.index % 100 == 0])
    warned = [r.getMessage() for r in caplog.records if "[unknown_share]" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("WARNING") and f"{DAY}: 1.0%" in warned[0]
