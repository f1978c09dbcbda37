"""The console's user management page (``/users``, the admin's): add a user, change a role, disable
or enable one.  Each change is an audit entry naming the admin who made it; disabling a user
ends their open sessions at once.  An admin cannot disable themselves (nobody would be left
to enable them).
"""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from fusion.console import roles
from fusion.console.accounts import AccountError
from fusion.console.forms import checked_form as _checked_form

SEE_OTHER = 303


def admin_routes(console, needs) -> list[Route]:
    """The user management routes of ``console`` (fusion.console.app.Console), each needing USERS."""
    page = UsersPage(console)
    return [
        Route("/users", needs(roles.USERS, page.show), name="users"),
        Route("/users/add", needs(roles.USERS, page.add), methods=["POST"]),
        Route("/users/{name}/role", needs(roles.USERS, page.set_role), methods=["POST"]),
        Route("/users/{name}/disable", needs(roles.USERS, page.disable), methods=["POST"]),
        Route("/users/{name}/enable", needs(roles.USERS, page.enable), methods=["POST"]),
    ]


class UsersPage:
    def __init__(self, console):
        self.console = console

    async def show(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        users = await asyncio.to_thread(self._users)
        return self.console.render(request, "users.html", status=status, users=users, roles=roles.ROLES, error=error)

    def _users(self) -> list[dict]:
        rows = self.console.accounts.all()
        for row in rows:
            row["sessions"] = self.console.sessions.open_count(row["name"])
        return rows

    async def add(self, request: Request) -> Response:
        form = await _checked_form(request)
        name, role = form.get("name", ""), form.get("role", "")
        return await self._change(request, name, "user-add", {"role": role},
                                  lambda: self.console.accounts.add(name, role, form.get("password", "")))

    async def set_role(self, request: Request) -> Response:
        form = await _checked_form(request)
        name, role = request.path_params["name"], form.get("role", "")
        return await self._change(request, name, "user-role", {"role": role}, lambda: self.console.accounts.set_role(name, role))

    async def disable(self, request: Request) -> Response:
        await _checked_form(request)
        name = request.path_params["name"]
        if name == request.state.user["name"]:
            return await self.show(request, error="You cannot disable yourself.", status=400)

        def disable() -> None:
            self.console.accounts.set_disabled(name, True)
            self.console.sessions.end_user(name, "user disabled")
        return await self._change(request, name, "user-disable", {}, disable)

    async def enable(self, request: Request) -> Response:
        await _checked_form(request)
        name = request.path_params["name"]
        return await self._change(request, name, "user-enable", {}, lambda: self.console.accounts.set_disabled(name, False))

    async def _change(self, request: Request, name: str, action: str, body: dict, change) -> Response:
        """Make ``change``; on success an audit entry by the admin, then back to the list."""
        try:
            await asyncio.to_thread(change)
        except AccountError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        await asyncio.to_thread(self.console.audit, request.state.user["name"], action, f"user/{name}", body)
        return RedirectResponse(request.url_for("users"), status_code=SEE_OTHER)
