"""The console's catalogues (``api/static/i18n/{en,de}.json``): the same keys in both
languages, and every key the page template, the presets panel's and the sign-in's scripts ask
for is there."""

from __future__ import annotations

import json
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
TEMPLATE = STATIC.parent / "templates" / "console.html"
CATALOGUES = {
    lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    for lang in ("en", "de")
}


def test_both_languages_have_the_same_keys() -> None:
    assert set(CATALOGUES["en"]) == set(CATALOGUES["de"])


def test_every_key_of_the_template_and_the_presets_and_session_scripts_is_in_both() -> None:
    wanted = set(re.findall(r"t\('([\w.]+)'", TEMPLATE.read_text(encoding="utf-8")))
    for name in ("presets.js", "session.js"):
        script = (STATIC / name).read_text(encoding="utf-8")
        wanted |= set(re.findall(r'\bt\("([\w.]+)"', script))
    wanted |= {f"presets.fit.{fit}" for fit in ("contain", "cover", "pad")}  # built as a name
    assert {k for k in wanted if k.startswith("presets.")} >= {"presets.title", "presets.save"}
    assert {k for k in wanted if k.startswith("session.")} >= {"session.open", "session.wrongKey"}
    for lang, catalogue in CATALOGUES.items():
        assert sorted(wanted - set(catalogue)) == [], lang


def test_the_presets_errors_are_sentences_in_both() -> None:
    types = (
        "store_required",
        "preset_exists",
        "preset_builtin",
        "preset_limit",
        "feature_disabled",
    )
    for catalogue in CATALOGUES.values():
        assert all(catalogue.get(f"error.{kind}") for kind in types)


def test_a_retry_refused_for_a_deleted_upload_is_a_sentence_in_both() -> None:
    # the console shows error.{type} for the store's job retry (docs/LIFECYCLE.md)
    for catalogue in CATALOGUES.values():
        assert catalogue.get("error.source_deleted", "").endswith(
            ("upload them again", "erneut hochladen")
        )
