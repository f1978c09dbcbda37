// The console's map (Leaflet, installed from npm): sensors, located shots in their 95% ellipses, which
// sensors heard the selected incident, and the city's own layers and basemap. Every request goes to the
// console itself: the data, the layers and the tiles are its own URLs (data-map holds them). It redraws
// when the server sends a revision (server-sent events), as the incident list does.
"use strict";
(function () {
  const STYLE = {
    sensor: {radius: 5, color: "#124", weight: 1, fillColor: "#48c", fillOpacity: 0.9},
    heardSensor: {radius: 7, color: "#e70", weight: 3, fillColor: "#48c", fillOpacity: 0.9},
    shot: {radius: 4, color: "#700", weight: 1, fillColor: "#e22", fillOpacity: 1},
    ellipse: {color: "#c11", weight: 1.5, fillColor: "#c11", fillOpacity: 0.12},
    selectedEllipse: {color: "#c11", weight: 3, fillColor: "#c11", fillOpacity: 0.22},
    heard: {color: "#e70", weight: 1.5, opacity: 0.8, dashArray: "4 3"},
    city: {color: "#666", weight: 2, fillColor: "#999", fillOpacity: 0.08},
  };
  const FIT_PADDING = 0.15;
  const CLOSEUP_PADDING = 1.5;   // the incident page opens on its ellipses with this much room round them
  const LABEL_OFFSET = [8, 0];
  // A local site is drawn on a plain metre grid (1 unit = 1 m): zooms far below 0 show kilometres.
  const LOCAL_ZOOM = {minZoom: -8, maxZoom: 5};
  const WGS84_MAX_ZOOM = 22;

  function latLng(c) { return L.latLng(c[1], c[0]); }   // GeoJSON [x, y] or [lon, lat]
  function textNode(s) { const span = document.createElement("span"); span.textContent = s; return span; }
  function escaped(s) { return textNode(s).innerHTML; }   // for Leaflet's few HTML-only strings

  function makeMap(el, config) {
    const local = config.frame !== "wgs84";
    const map = L.map(el, Object.assign({zoomSnap: 0.25, attributionControl: !local},
      local ? Object.assign({crs: L.CRS.Simple}, LOCAL_ZOOM) : {maxZoom: WGS84_MAX_ZOOM}));
    map.setView([0, 0], 0);   // a view at once, so layers render when added; fitted to the data when it comes
    if (map.attributionControl) map.attributionControl.setPrefix("Leaflet");
    L.control.scale({imperial: false}).addTo(map);
    if (config.basemap) {
      const b = config.basemap, w = b.bounds;
      // No tiles below the file's least zoom: Leaflet would otherwise ask for every tile of it under a far view.
      map.setView([(w[1] + w[3]) / 2, (w[0] + w[2]) / 2], b.min_zoom);
      L.tileLayer(b.url, {minZoom: b.min_zoom, maxNativeZoom: b.max_zoom, maxZoom: WGS84_MAX_ZOOM,
        bounds: [[w[1], w[0]], [w[3], w[2]]], attribution: escaped(b.attribution), className: "ew-basemap"}).addTo(map);
    }
    return map;
  }

  function cityLayers(map, config) {
    const overlays = L.control.layers(null, null, {collapsed: false});
    if (config.layers.length) overlays.addTo(map);
    return Promise.all(config.layers.map(async (spec) => {
      const doc = await (await fetch(spec.url, {credentials: "same-origin"})).json();
      const layer = L.geoJSON(doc, {
        style: () => STYLE.city,
        pointToLayer: (f, at) => L.circleMarker(at, Object.assign({radius: 3}, STYLE.city)),
        onEachFeature: (f, l) => l.on("add", () => {
          const e = l.getElement && l.getElement();
          if (e) { e.classList.add("ew-city"); e.dataset.layer = spec.name; }
        }),
      }).addTo(map);
      overlays.addOverlay(layer, escaped(spec.name));
      return layer;
    }));
  }

  class IncidentMap {
    constructor(el, config) {
      this.config = config;
      this.map = makeMap(el, config);
      this.sensors = L.layerGroup().addTo(this.map);
      this.incidents = L.layerGroup().addTo(this.map);
      this.selected = config.incident;   // the incident page's own; on the live page, the newest until one is clicked
      this.chosen = Boolean(config.incident);
      this.features = [];
      this.fitted = false;
      this.cityReady = cityLayers(this.map, config);
    }

    drawn(kind) {   // for tests and curious users: the properties of what is on the map now
      const out = [];
      for (const group of [this.sensors, this.incidents]) {
        group.eachLayer((l) => { if (l.feature.properties.kind === kind) out.push(l.feature.properties); });
      }
      return out;
    }

    select(incident) {
      this.selected = incident;
      this.chosen = true;
      this.draw();
      const shots = this.features.filter((f) => f.properties.incident === incident && f.properties.kind === "ellipse");
      if (shots.length) this.map.fitBounds(L.geoJSON({type: "FeatureCollection", features: shots}).getBounds().pad(FIT_PADDING));
    }

    update(doc) {
      this.features = doc.features;
      if (!this.chosen) {
        const shots = doc.features.filter((f) => f.properties.kind === "shot");
        this.selected = shots.length ? shots[shots.length - 1].properties.incident : null;
      }
      this.draw();
      if (!this.fitted && doc.features.length) {
        const ellipses = doc.features.filter((f) => f.properties.kind === "ellipse");
        const closeup = this.config.incident && ellipses.length;
        const focus = closeup ? ellipses : doc.features;
        this.map.fitBounds(L.geoJSON({type: "FeatureCollection", features: focus}).getBounds().pad(closeup ? CLOSEUP_PADDING : FIT_PADDING));
        this.fitted = true;
      }
    }

    draw() {
      const heard = new Set();
      for (const f of this.features) {
        if (f.properties.kind === "shot" && f.properties.incident === this.selected) f.properties.sensors.forEach((s) => heard.add(s));
      }
      this.sensors.clearLayers();
      this.incidents.clearLayers();
      const order = {sensor: 0, heard: 1, ellipse: 2, shot: 3};   // shots on top of their ellipses and lines
      const features = this.features.slice().sort((a, b) => order[a.properties.kind] - order[b.properties.kind]);
      for (const f of features) {
        const p = f.properties;
        if (p.kind === "heard" && p.incident !== this.selected) continue;
        const layer = this.layerOf(f, p.kind === "sensor" && heard.has(p.sensor));
        (p.kind === "sensor" ? this.sensors : this.incidents).addLayer(layer);
        const e = layer.getElement();
        if (p.incident !== undefined) e.dataset.incident = p.incident;
        if (p.sensor !== undefined) e.dataset.sensor = p.sensor;
        if (p.incident !== undefined && p.incident === this.selected) e.classList.add("ew-selected");
        if (p.kind === "sensor" && heard.has(p.sensor)) e.classList.add("ew-heard");
      }
    }

    layerOf(f, heard) {
      const p = f.properties, g = f.geometry, selected = p.incident === this.selected;
      const kind = p.kind === "sensor" && heard ? "heardSensor" : (p.kind === "ellipse" && selected ? "selectedEllipse" : p.kind);
      const options = Object.assign({className: "ew-" + p.kind}, STYLE[kind]);
      let layer;
      if (g.type === "Point") layer = L.circleMarker(latLng(g.coordinates), options);
      else if (g.type === "Polygon") layer = L.polygon(g.coordinates[0].map(latLng), options);
      else layer = L.polyline(g.coordinates.map(latLng), options);
      layer.feature = f;
      if (p.kind === "sensor") {
        layer.bindTooltip(textNode(p.sensor), {permanent: true, direction: "right", offset: LABEL_OFFSET, className: "ew-label"});
      } else if (p.kind === "shot") {
        const radius = p.err_m === null ? "" : `, ${Math.round(p.err_m)} m (95%)`;
        layer.bindTooltip(textNode(`${p.incident} shot ${p.shot} (${p.class || ""}${radius})`));
        layer.on("click", () => this.select(p.incident));
      }
      return layer;
    }
  }

  function follow(view, config) {
    let loading = false, again = false;
    async function reload() {
      if (loading) { again = true; return; }
      loading = true;
      try {
        const response = await fetch(config.data, {credentials: "same-origin"});
        if (response.ok && !response.redirected) view.update(await response.json());
      } finally {
        loading = false;
        if (again) { again = false; reload(); }
      }
    }
    const events = new EventSource("/events");
    events.addEventListener("revision", (e) => {
      if (!config.incident || JSON.parse(e.data).incident === config.incident) reload();
    });
    events.addEventListener("open", reload);   // and what was missed while the stream was down
  }

  document.addEventListener("DOMContentLoaded", () => {
    const el = document.getElementById("map");
    if (!el || !window.L) return;
    const config = JSON.parse(el.dataset.map);
    const view = new IncidentMap(el, config);
    window.earwitnessMap = view;
    follow(view, config);
    document.addEventListener("click", (e) => {   // a row of the live list selects its incident
      const row = e.target.closest && e.target.closest("tr.incident");
      if (row && !e.target.closest("a")) view.select(row.dataset.incident);
    });
  });
})();
