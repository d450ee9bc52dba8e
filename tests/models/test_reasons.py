"""Reason sentences of the call-graph features, in both languages (``configs/reasons.yaml``)."""

from core.config import DEFAULT_CONFIG, load_settings
from models.reasons import _sentence, load_templates


def test_closest_contacts_who_moved_away_read_as_staff_say_it():
    settings = load_settings(DEFAULT_CONFIG)
    tpl = load_templates()
    k = settings.features.graph_top_contacts
    code, en, action = _sentence("top_contacts_ported_60d", 3.0, 0.4, "en", settings, tpl)
    assert (code, action) == ("CONTACTS_LEFT", "competitive_offer")
    assert (
        en == f"3 of their {k} closest contacts on our network moved to another network in the last 60 days"
    )
    _, zh, _ = _sentence("top_contacts_ported_60d", 3.0, 0.4, "zh", settings, tpl)
    assert zh == f"{k}个最常联系的本网联系人中有3人近60天转入其他运营商"
    assert tpl["actions"][action]["en"] == "Make a competitive retention offer"
    # lowering the risk, it names no action
    assert _sentence("contact_churn_score", 0.0, -0.1, "en", settings, tpl)[2] == "none"
