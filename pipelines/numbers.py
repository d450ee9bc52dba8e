"""Dialled numbers in one canonical form, the form ingestion classifies and hashes.

Exports write the same number many ways: ``+8613800138000``, ``8613800138000``, ``008613800138000``,
``138 0013 8000``, ``138-0013-8000``, ``(010) 1234 5678``, ``+86 (0)10 12345678``. Each becomes the
way it is dialled at home under the configured number plan (``data.number_region``, parsed by
libphonenumber through ``phonenumbers``): a mobile as its 11 digits, a landline with the trunk prefix
(``01012345678``), a foreign number with the international prefix (``00852…``); short codes
(``10000``, ``10086``, ``95533``) and anything that is no phone number stay as they are. So a number
classes and hashes the same however the export wrote it.

One Python function (:func:`normalise_array`) serves both engines: DuckDB calls it as an Arrow UDF,
Spark as a pandas UDF (``pipelines/ingest_spark.py``; both named :data:`UDF_NAME`, so the one SQL text of ``pipelines/ingest.py``
runs on either). Why it stays fast at 10^8 calls: parsing costs tens of µs a number, so each batch
is reduced to its distinct numbers (dictionary encoding, in Arrow's C++), separators and the
commonest prefixes of mobiles (+86, 0086, 86, trunk 0) are dropped by vectorised regexes, numbers then
canonical (most of any export) are recognised by one more and never parsed, and the rest are parsed
once per process (an LRU cache): a subscriber's contacts recur day after day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.sqltypes import VARCHAR

UDF_NAME = "normalise_number"
# written between digits in exports: spaces, dashes, dots, slashes, brackets
_SEPARATORS = re.compile(r"[\s\-./()\[\]]")
# numbers already in their canonical form (what normalise_number returns for them) under a plan whose
# country code, international and trunk prefixes are 86, 00 and 0: mobiles, landlines with the trunk
# prefix, foreign numbers after 00 (not 0086), short codes. Anything else is parsed.
_CANONICAL = {
    "CN": r"^(?:1[3-9]\d{9}|0(?:10|2\d)\d{8}|0[3-9]\d{9,10}|00(?:[1-79]\d|8[0-57-9])\d{4,13}|1\d{4}|95\d{3})$"
}
# the commonest non-canonical forms, rewritten in Arrow before the canonical check (after the
# separators are dropped): a mobile behind +86, 0086, 86 or the trunk 0. Only a fast path: what
# they give is what parsing gives (tests/pipelines/test_ingest_numbers.py)
_REWRITES = {"CN": ((r"^(?:\+|00)?86(1[3-9]\d{9})$", r"\1"), (r"^0(1[3-9]\d{9})$", r"\1"))}


@dataclass(frozen=True)
class NumberPlan:
    """What the canonical form depends on, from libphonenumber's metadata of ``region``."""

    region: str
    country_code: int
    international_prefix: str  # dialled before a foreign country code ("00")
    trunk_prefix: str  # dialled before a domestic area code ("0")
    canonical: str | None  # regex of numbers already canonical (the fast path), None: parse all
    rewrites: tuple[tuple[str, str], ...]  # (regex, replacement): non-canonical forms made canonical


@cache
def number_plan(region: str) -> NumberPlan:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None:
        raise ValueError(f"unknown number plan region {region!r} (an ISO 3166 code such as CN)")
    return NumberPlan(
        region,
        meta.country_code,
        meta.preferred_international_prefix or meta.international_prefix or "00",
        meta.national_prefix or "",
        _CANONICAL.get(region),
        _REWRITES.get(region, ()),
    )


@lru_cache(maxsize=1 << 20)
def normalise_number(value: str, region: str) -> str:
    """``value`` as dialled at home in ``region``'s number plan (see the module docstring)."""
    plan = number_plan(region)
    cleaned = _SEPARATORS.sub("", value)
    if not re.fullmatch(r"\+?\d+", cleaned):
        return value  # not a phone number: kept, classed unknown
    if len(cleaned) <= 5:
        return cleaned  # a short code: never parsed, no country code in front
    try:
        n = phonenumbers.parse(cleaned, region, keep_raw_input=True)  # keeps where the country code came from
    except phonenumbers.NumberParseException:
        return cleaned.replace("+", plan.international_prefix, 1)
    nsn = phonenumbers.national_significant_number(n)
    if n.country_code != plan.country_code:
        return f"{plan.international_prefix}{n.country_code}{nsn}"
    if phonenumbers.is_valid_number(n):
        return re.sub(r"\D", "", phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.NATIONAL))
    if len(nsn) <= 5 or re.fullmatch(r"1\d{10}", nsn):
        return nsn  # a short code or a mobile-shaped number behind a country code or trunk prefix
    source = n.country_code_source
    if source is not None and source != phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY:
        return plan.trunk_prefix + nsn  # a domestic number written with the country code
    return cleaned


def normalise_array(values: pa.Array | pa.ChunkedArray, region: str) -> pa.Array:
    """:func:`normalise_number` of each value (nulls stay null), parsing each distinct
    non-canonical number once."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary
    plan = number_plan(region)
    if not plan.canonical:
        parsed = [normalise_number(v, region) for v in distinct.to_pylist()]
        return pa.array(parsed, type=distinct.type).take(encoded.indices)
    cleaned = pc.replace_substring_regex(distinct, _SEPARATORS.pattern, "")
    for pattern, replacement in plan.rewrites:
        cleaned = pc.replace_substring_regex(cleaned, pattern, replacement)
    todo = pc.invert(pc.match_substring_regex(cleaned, plan.canonical))
    parsed = [normalise_number(v, region) for v in distinct.filter(todo).to_pylist()]
    if parsed:
        cleaned = pc.replace_with_mask(cleaned, todo, pa.array(parsed, type=distinct.type))
    return cleaned.take(encoded.indices)


def normalise_series(values: pd.Series, region: str) -> pd.Series:
    """:func:`normalise_array` of a pandas column (the Spark UDF's and validation's form)."""
    out = normalise_array(pa.array(values, from_pandas=True), region)
    return pd.Series(out.to_pandas(), index=values.index, dtype=object)


def register_duckdb(con, region: str) -> None:
    """:data:`UDF_NAME` on the DuckDB connection ``con``: an Arrow UDF over whole vectors."""
    con.create_function(
        UDF_NAME, lambda v: normalise_array(v, region), [VARCHAR], VARCHAR, type="arrow", side_effects=False
    )
