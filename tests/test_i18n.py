"""The message catalogue: every key in both languages, defined once, and every key the code asks for exists."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from anning_lib.errors import ConfigError
from anning_lib.i18n import LANGS, catalogue, lang_of, t


def test_every_message_has_both_languages():
    cat = catalogue()
    assert len(cat) > 50
    assert all(set(LANGS) <= set(texts) for texts in cat.values())


def test_every_key_the_portal_uses_exists():
    """A static scan of ``t("key"`` in the dashboards and the library: a typo would fail only when a user
    opens the page."""
    used = set()
    for path in list((REPO / "dashboards").glob("*.py")) + list((REPO / "anning_lib").rglob("*.py")):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']""", path.read_text(encoding="utf-8")))
    assert used, "no t(...) calls found"
    assert sorted(used - set(catalogue())) == []


def test_lookup_and_language_codes():
    assert t("page_overview", "en") == "Park overview" and t("page_overview") == "园区总览"
    assert t("page_overview", "fr") == "园区总览"            # unknown language: the park's default
    assert lang_of("en-US") == "en" and lang_of("zh-CN,zh;q=0.9") == "zh_CN" and lang_of(None) == "zh_CN"


def test_a_key_defined_twice_or_missing_a_language_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("k1: {zh_CN: 一, en: one}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("k1: {zh_CN: 一, en: one}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="k1: defined twice"):
        catalogue(tmp_path)
    (tmp_path / "b.yaml").write_text("k2: {zh_CN: 二}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="k2: missing language"):
        catalogue(tmp_path)
