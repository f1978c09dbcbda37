"""The console's evidence and casework: the incident page's waveforms, clips, revisions, cameras and
calls; the clip as WAV; the calls page and the unreported-gunfire page.

:func:`incident_casework` adds to the incident page's context; :class:`CaseworkPages` has the
routes (each behind the console's session check).  A clip is served as 16-bit PCM WAV, the same
samples as the FLAC the node signed (:func:`fusion.console.waveforms.clip_wav`).

Example::

    pages = CaseworkPages(console, areas="areas.geojson")
    routes += pages.routes(signed_in)
"""
from __future__ import annotations

import asyncio
import pathlib

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from fusion.console.history import revision_changes
from fusion.console.unreported_view import DEFAULT_CLASSES, calls_page, unreported_page
from fusion.console.waveforms import clip_wav, first_discharge_ns, waveform_panels
from fusion.forensics.frame import FrameError
from fusion.forensics.geojson import GeoJSONError
from fusion.server.calls import CallLog

NOT_FOUND = 404
UNUSABLE = 422


def incident_casework(store, inc: dict, pulses: list[dict]) -> dict:
    """The incident page's evidence: waveforms of the stored clips, every revision with its changes,
    the cameras to pull, the calls matched so far (each with its rule)."""
    first_ns = first_discharge_ns(inc)
    return {"first_ns": first_ns, "clips": waveform_panels(store.clips(inc["incident"]), pulses, first_ns),
            "history": revision_changes(store.revisions(inc["incident"])), "cameras": inc.get("cameras"),
            "call_matches": CallLog(store).matches(inc["incident"])}


class CaseworkPages:
    """Handlers of the clip, calls and unreported routes over the console's store and templates."""

    def __init__(self, console, areas: str | pathlib.Path | None = None):
        self.console, self.store, self.areas = console, console.store, areas

    def routes(self, signed_in) -> list[Route]:
        return [Route("/incident/{incident}/clip/{index:int}.wav", signed_in(self.clip), name="clip"),
                Route("/calls", signed_in(self.calls), name="calls"),
                Route("/unreported", signed_in(self.unreported), name="unreported")]

    async def clip(self, request: Request) -> Response:
        incident, index = request.path_params["incident"], request.path_params["index"]
        clips = await asyncio.to_thread(self.store.clips, incident)
        if not 0 <= index < len(clips):
            return PlainTextResponse("no such clip", status_code=NOT_FOUND)
        wav = await asyncio.to_thread(clip_wav, clips[index]["data"])
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, no-store"})

    async def calls(self, request: Request) -> Response:
        return self.console.render(request, "calls.html", **await asyncio.to_thread(calls_page, self.store))

    async def unreported(self, request: Request) -> Response:
        """?classes=gunfire,unknown: the classes counted, as the command's --classes (default gunfire)."""
        classes = {c.strip() for c in request.query_params.get("classes", "").split(",") if c.strip()} or DEFAULT_CLASSES
        try:
            page = await asyncio.to_thread(unreported_page, self.store, self.areas, classes)
        except (GeoJSONError, FrameError) as exc:   # the areas file: say what is wrong with it
            return self.console.render(request, "unreported.html", status=UNUSABLE, error=str(exc), rows=[], map=None,
                                       classes=[], confidence=None, areas_file=False)
        return self.console.render(request, "unreported.html", error=None, **page)
