"""The one message catalogue for user-facing text (ARCHITECTURE.md §5): ``zh_CN`` (the park's default) and ``en``.

The catalogue is the YAML files of ``data/i18n/`` (``messages.yaml`` for the shared words, one file per portal
page): ``key: {zh_CN: ..., en: ...}``. Every key has both languages and is defined once (checked on load).
:func:`t` formats with ``str.format`` keyword arguments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from anning_lib.errors import ConfigError

LANGS = ("zh_CN", "en")
DEFAULT_LANG = "zh_CN"


@lru_cache(maxsize=4)
def catalogue(folder: Path | None = None) -> dict[str, dict[str, str]]:
    """The messages by key and language, from every ``*.yaml`` of ``folder`` (default ``data/i18n``; read once).

    Raises
    ------
    ConfigError
        naming the file and key of a message missing a language or defined twice.
    """
    from anning_lib.config import get_settings

    folder = folder or get_settings().data_dir / "i18n"
    out: dict[str, dict[str, str]] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, texts in raw.items():
            missing = [lang for lang in LANGS if not isinstance(texts, dict) or not texts.get(lang)]
            if missing:
                raise ConfigError(f"{path}: {key}: missing language(s) {', '.join(missing)}")
            if key in out:
                raise ConfigError(f"{path}: {key}: defined twice (also in another file of {folder})")
            out[key] = texts
    return out


def lang_of(value: object) -> str:
    """A supported language code from a cookie/query value (``en``, ``en-US``, ``zh``...); default zh_CN."""
    text = str(value or "").replace("-", "_").lower()
    return "en" if text.startswith("en") else DEFAULT_LANG


def t(key: str, lang: str = DEFAULT_LANG, **kw) -> str:
    """The text of ``key`` in ``lang``, formatted with ``kw``; an unknown key raises KeyError (a bug)."""
    text = catalogue()[key][lang if lang in LANGS else DEFAULT_LANG]
    return text.format(**kw) if kw else text


def word(prefix: str, value: object, lang: str = DEFAULT_LANG) -> str:
    """The text of key ``<prefix>_<value>`` (a status, a kind...) or the value itself where the catalogue has no
    such key (a value newer than the catalogue); None gives an empty string."""
    if value is None:
        return ""
    key = f"{prefix}_{value}"
    return t(key, lang) if key in catalogue() else str(value)
