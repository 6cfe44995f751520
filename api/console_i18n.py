"""The console's languages: one catalogue per language (``static/i18n/{lang}.json``, flat keys
to strings with ``{name}`` placeholders), chosen by the remembered switch (cookie
:data:`LANG_COOKIE`) or else by ``Accept-Language``; English when nothing matches."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request

LANGUAGES = ("en", "de")
"""Supported languages; the first is the fallback."""
LANG_COOKIE = "console_lang"
"""Set by the page's language switch (not HttpOnly: the script writes it)."""
_DIR = Path(__file__).resolve().parent / "static" / "i18n"
CATALOGUES: dict[str, dict[str, str]] = {
    lang: json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES
}


def _accepted(header: str) -> list[str]:
    """Primary language tags of an ``Accept-Language`` header, by descending q (RFC 9110)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, rest = part.strip().partition(";")
        quality = 1.0
        if rest.strip().startswith("q="):
            try:
                quality = float(rest.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.split("-")[0].lower()))
    return [tag for _q, _i, tag in sorted(ranked)]


def choose_language(request: Request) -> str:
    """The page's language: the cookie's if supported, else the best ``Accept-Language``
    match, else English."""
    remembered = request.cookies.get(LANG_COOKIE, "")
    if remembered in LANGUAGES:
        return remembered
    for tag in _accepted(request.headers.get("accept-language", "")[:500]):
        if tag in LANGUAGES:
            return tag
    return LANGUAGES[0]


def translate(lang: str, key: str, **values: object) -> str:
    """``key`` in ``lang`` with ``{name}`` placeholders filled; the English text, then the key
    itself, when a catalogue lacks it."""
    text = CATALOGUES[lang].get(key) or CATALOGUES[LANGUAGES[0]].get(key) or key
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text
