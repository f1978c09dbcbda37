"""The map's HTTP side: its data, the city's layers and basemap tiles, and the map library, all from the console itself.

Leaflet (from npm: fusion/console/package.json, installed by ``make console-js``) is served
from node_modules at ``/vendor/leaflet``; nothing is copied into the repository and the page
asks no other host for anything.  Routes (all behind the console's sign-in)::

    /map/data                 sensors and every incident's shots, ellipses, lines (fusion.console.mapdata)
    /map/data/{incident}      sensors and that incident's
    /map/layer/{n}            the n-th [console] layers file
    /map/tiles/{z}/{x}/{y}    the [console] basemap's tiles
"""
from __future__ import annotations

import asyncio
import json
import pathlib
import urllib.parse

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fusion.console.citymap import CityMap
from fusion.console.mapdata import map_features, site_plane

LEAFLET_DIR = pathlib.Path(__file__).parent / "node_modules" / "leaflet" / "dist"
NOT_FOUND = 404
# Tiles and layers change only with a restart; a browser may keep them a while.
CACHE = {"Cache-Control": "private, max-age=3600"}


class MapLibraryMissing(RuntimeError):
    """The map library is not installed (npm); the message says how to install it."""


class MapRoutes:
    """The map's handlers over the console's store and registry and the city's files."""

    def __init__(self, store, registry, city: CityMap | None = None):
        if not (LEAFLET_DIR / "leaflet.js").is_file():
            raise MapLibraryMissing(f"the console's map library is not installed ({LEAFLET_DIR} missing): "
                                    "run `make console-js` (npm ci in fusion/console)")
        self.store, self.registry = store, registry
        self.city = city or CityMap()
        self.plane = site_plane(registry.sensors)
        self.city.check_frame(self.plane.frame)

    def page_config(self, incident: str | None = None) -> str:
        """The map's settings for the page (JSON in a data- attribute): frame, data URL, layers, basemap."""
        data = "/map/data" if incident is None else "/map/data/" + urllib.parse.quote(incident, safe="")
        return json.dumps({"frame": self.plane.frame, "data": data, "incident": incident, **self.city.describe()})

    def routes(self, signed_in) -> list:
        return [Route("/map/data", signed_in(self.data)), Route("/map/data/{incident}", signed_in(self.data)),
                Route("/map/layer/{n:int}", signed_in(self.layer)),
                Route("/map/tiles/{z:int}/{x:int}/{y:int}", signed_in(self.tile)),
                Mount("/vendor/leaflet", StaticFiles(directory=LEAFLET_DIR), name="leaflet")]

    async def data(self, request: Request) -> Response:
        incident = request.path_params.get("incident")
        doc = await asyncio.to_thread(self._features, incident)
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    def _features(self, incident: str | None) -> dict:
        if incident is None:
            incidents = self.store.incidents()
        else:
            one = self.store.incident(incident)
            incidents = [one] if one is not None else []
        return map_features(self.registry.positions, incidents, self.plane)

    async def layer(self, request: Request) -> Response:
        n = request.path_params["n"]
        if not 0 <= n < len(self.city.layers):
            return Response("no such layer", status_code=NOT_FOUND)
        return Response(self.city.layers[n].body, media_type="application/geo+json", headers=CACHE)

    async def tile(self, request: Request) -> Response:
        basemap = self.city.basemap
        p = request.path_params
        body = await asyncio.to_thread(basemap.tile, p["z"], p["x"], p["y"]) if basemap else None
        if body is None:
            return Response(status_code=NOT_FOUND)
        return Response(body, media_type=basemap.media_type, headers=CACHE)  # type: ignore[union-attr]
