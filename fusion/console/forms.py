"""The console's POSTed forms, each checked against the session's CSRF token before it is read.

Example::

    form = await checked_form(request)   # CsrfRefused (403) without the session's token
"""
from __future__ import annotations

import hmac
import secrets
import urllib.parse

from starlette.requests import Request

FORM_MAX_BYTES = 64 * 1024


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made at the first page, renewed at login)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


class CsrfRefused(Exception):
    pass


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form (URL-encoded), only if it carries the session's CSRF token."""
    body = await request.body()
    if len(body) > FORM_MAX_BYTES:
        raise CsrfRefused("form too large")
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    token = request.session.get("csrf")
    if not token or not hmac.compare_digest(form.get("csrf", ""), token):
        raise CsrfRefused("missing or wrong CSRF token")
    return form
