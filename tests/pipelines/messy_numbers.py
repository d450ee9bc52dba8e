"""The ways real exports write a dialled number, as functions of its clean form (test helpers)."""

from __future__ import annotations

import re

import pandas as pd

from core.io import PARTITION

DAY = "2026-03-10"


def _area(number: str) -> int:
    """Length of a landline's area code with the trunk 0 (010, 02x: 3; else 4)."""
    return 3 if re.match(r"0(?:10|2\d)", number) else 4


def messy_forms(number: str) -> list[str]:
    """Other ways an export writes ``number`` (the clean form ingestion's fast path knows)."""
    if re.fullmatch(r"1\d{10}", number):  # mobile
        a, b, c = number[:3], number[3:7], number[7:]
        return [
            f"+86{number}",
            f"86{number}",
            f"0086{number}",
            f"{a} {b} {c}",
            f"{a}-{b}-{c}",
            f"+86 {a} {b} {c}",
            f"0{number}",
        ]
    if re.fullmatch(r"0[1-9]\d{9,10}", number):  # landline
        k = _area(number)
        area, local = number[:k], number[k:]
        return [
            f"({area}) {local[:4]} {local[4:]}",
            f"{area}-{local}",
            f"+86 {area[1:]} {local}",
            f"0086{area[1:]}{local}",
            f"+86 (0){area[1:]} {local}",
        ]
    if number.startswith("00"):  # international
        return [f"+{number[2:]}", f"+{number[2:5]} {number[5:]}"]
    return [number]  # short codes: as they are


def messy_export(settings, day: str = DAY) -> pd.DataFrame:
    """The calls of ``day`` as landed, their numbers rewritten in every messy form in turn."""
    path = next((settings.landing_dir / "cdr" / f"{PARTITION}={day}").glob("*.parquet"))
    calls = pd.read_parquet(path)
    numbers = calls["other_party"].astype(str)
    forms = [messy_forms(n) for n in numbers]
    calls["other_party"] = [f[i % len(f)] for i, f in enumerate(forms)]
    assert (calls["other_party"] != numbers).mean() > 0.9
    calls.to_parquet(path, index=False)
    return calls


def raw_day(settings, day: str = DAY) -> pd.DataFrame:
    return pd.read_parquet(settings.raw_dir / "cdr" / f"{PARTITION}={day}")
