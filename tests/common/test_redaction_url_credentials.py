"""Issue 26 G8: a URL password reaches the wire as ``Authorization: Basic base64(user:pass)``; both forms are
registered with redaction, and a header written out in text is masked whatever it carries."""
from __future__ import annotations

import base64

from pipelines.common.redaction import redact_text, register_url_credentials, url_credential_forms


def test_url_credential_forms_include_the_basic_header_value():
    forms = url_credential_forms("http://bob:s3cr%40t-pass@judge.local:8000/v1")
    assert "s3cr@t-pass" in forms and "s3cr%40t-pass" in forms
    assert base64.b64encode(b"bob:s3cr@t-pass").decode() in forms
    assert url_credential_forms("http://judge.local:8000/v1") == []
    assert url_credential_forms("http://[::1") == []           # an unparsable URL is no crash


def test_registered_url_credentials_are_masked_in_any_text():
    register_url_credentials("https://alice:longpassword-42@host/v1")
    encoded = base64.b64encode(b"alice:longpassword-42").decode()
    text = f"sent {{'authorization': 'Basic {encoded}'}} then echoed {encoded} and longpassword-42."
    out = redact_text(text)
    assert encoded not in out and "longpassword-42" not in out


def test_an_authorization_header_in_text_is_masked_but_prose_is_kept():
    out = redact_text("Authorization: Basic Zm9vOmJhcg==; Basic arithmetic is fine; authorization=Bearer xyz")
    assert out == "Authorization: Basic ***; Basic arithmetic is fine; authorization=Bearer ***"
