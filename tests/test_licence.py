"""churnwarn is Apache-2.0 and ships with no GPL/AGPL dependency."""

import importlib.metadata as md
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Packages whose metadata mentions the GPL but that may be used from Apache-2.0 code; each says why.
ALLOWED = {
    "pygit2": "GPLv2 with the linking exception (as libgit2): linking from any licence is permitted",
    "grandalf": "dual-licensed GPLv2 | EPLv1: used under EPL",
    "asyncssh": "EPL-2.0 OR GPL-2.0-or-later: used under EPL",
    "dulwich": "Apache-2.0 OR GPL-2.0-or-later: used under Apache-2.0",
}


def _licence_text(dist: md.Distribution) -> str:
    m = dist.metadata
    parts = [m.get("License-Expression") or "", (m.get("License") or "")[:500]]
    parts += [c for c in (m.get_all("Classifier") or []) if c.startswith("License")]
    return " | ".join(p for p in parts if p)


def test_project_is_apache_2():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def is_gpl(text: str) -> bool:
    """GPL or AGPL named anywhere; the LGPL (Lesser/Library) alone does not count."""
    text = re.sub(
        r"LGPL|GNU Library or Lesser General Public License|Lesser General Public", "", text, flags=re.I
    )
    return bool(re.search(r"GPL|General Public|Affero", text, re.I))


def test_no_gpl_or_agpl_dependency():
    offenders = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name not in ALLOWED and is_gpl(_licence_text(dist)):
            offenders[name] = _licence_text(dist)[:120]
    assert not offenders, f"GPL/AGPL-licensed dependencies: {offenders}"


def test_the_check_recognises_gpl():
    assert is_gpl("GNU GENERAL PUBLIC LICENSE Version 3") and is_gpl("AGPL-3.0-only")
    assert is_gpl("License :: OSI Approved :: GNU General Public License v2 (GPLv2)")
    assert not is_gpl(
        "LGPL with exceptions | License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)"
    )
    assert not is_gpl("Apache-2.0")
