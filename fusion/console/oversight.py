"""The console's read-only oversight pages: the audit log (``/audit``, the auditor's) with its
verification, and the transparency dashboard (``/dashboard``, the analyst's) with the figures
``earwitness stats`` prints (:mod:`fusion.console.stats`).
"""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fusion.console import roles
from fusion.console.stats import transparency
from fusion.forensics.transparency import DIMENSIONS, SHARES
from fusion.server.audit import AuditLog

# Entries shown, newest first (the verification covers all of them).
AUDIT_PAGE_ENTRIES = 500
DEFAULT_BY = ("area",)
SHARE_COLUMNS = [f"{name}{suffix}" for name in SHARES for suffix in ("_share", "_ci_low", "_ci_high")]


def oversight_routes(console, needs) -> list[Route]:
    """The audit and dashboard routes of ``console`` (fusion.console.app.Console)."""
    pages = OversightPages(console)
    return [Route("/audit", needs(roles.AUDIT, pages.audit), name="audit"),
            Route("/dashboard", needs(roles.DASHBOARD, pages.dashboard), name="dashboard")]


class OversightPages:
    def __init__(self, console):
        self.console = console

    async def audit(self, request: Request) -> Response:
        log = AuditLog(self.console.store)
        verdict = await asyncio.to_thread(log.verify)
        entries = await asyncio.to_thread(log.entries)
        shown = list(reversed(entries[-AUDIT_PAGE_ENTRIES:]))
        return self.console.render(request, "audit.html", verdict=verdict, entries=shown, total=len(entries))

    async def dashboard(self, request: Request) -> Response:
        by = [d for d in DIMENSIONS if d in request.query_params.getlist("by")] or list(DEFAULT_BY)
        try:
            table = await asyncio.to_thread(transparency, self.console.store, by, self.console.areas)
        except ValueError as exc:   # a bad areas file: the page says why
            return self.console.render(request, "dashboard.html", status=500, table=None, error=str(exc),
                                       dimensions=DIMENSIONS, by=by)
        return self.console.render(request, "dashboard.html", table=table, error=None, dimensions=DIMENSIONS, by=by,
                                   shares=SHARES, share_columns=SHARE_COLUMNS)
