"""Who may do what in the console: the one matrix of roles and permissions every route and action checks.

A permission names a page or an action; each role has a set of them (``MATRIX``).  Routes
declare the permission they need (:func:`fusion.console.app.console_app`), the review module
checks its actions against the same sets, and templates show only what the role may use.

- ``dispatcher``: the live list and map, incident pages, an officer's disposition; no review;
- ``reviewer``: as a dispatcher, and confirms, dismisses or reclassifies alerts;
- ``analyst``: incidents (read) and the transparency dashboard;
- ``auditor``: incidents (read) and the audit log with its verification, read only;
- ``admin``: everything, and the users (add, disable, change a role).
"""
from __future__ import annotations

LIVE = "live"              # the live list, map and event stream
INCIDENT = "incident"      # incident pages
CONFIRM, DISMISS, RECLASSIFY = "confirm", "dismiss", "reclassify"
DISPOSITION = "disposition"
DASHBOARD = "dashboard"    # the transparency dashboard
AUDIT = "audit"            # the audit log page
USERS = "users"            # user management

REVIEW_ACTIONS = (CONFIRM, DISMISS, RECLASSIFY)
PERMISSIONS = (LIVE, INCIDENT, *REVIEW_ACTIONS, DISPOSITION, DASHBOARD, AUDIT, USERS)
ROLES = ("dispatcher", "reviewer", "analyst", "auditor", "admin")

MATRIX: dict[str, frozenset[str]] = {
    "dispatcher": frozenset({LIVE, INCIDENT, DISPOSITION}),
    "reviewer": frozenset({LIVE, INCIDENT, *REVIEW_ACTIONS, DISPOSITION}),
    "analyst": frozenset({LIVE, INCIDENT, DASHBOARD}),
    "auditor": frozenset({LIVE, INCIDENT, AUDIT}),
    "admin": frozenset(PERMISSIONS),
}


def may(role: str | None, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (an unknown role has none)."""
    return permission in MATRIX.get(role or "", frozenset())


# What a refusal says each permission is for.
DOING = {LIVE: "watch the live list", INCIDENT: "see incidents", DISPOSITION: "record a disposition",
         DASHBOARD: "see the transparency dashboard", AUDIT: "see the audit log", USERS: "manage users"}


def refusal(role: str, permission: str) -> str:
    """``"an auditor may not manage users"``."""
    article = "an" if role[:1] in "aeiou" else "a"
    return f"{article} {role} may not {DOING.get(permission, permission)}"
