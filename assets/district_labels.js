/* City Panorama: district names on the map, as HTML over the map canvas.
 *
 * The offline map style has no glyphs, so MapLibre cannot draw text. The districts trace carries
 * its labels in meta.labels ([name, lon, lat], most populous first); this script keeps one
 * absolutely placed <span> per name over every plotly map that has such a trace, moves them with
 * the map, hides them with the districts layer, and drops a name that would overlap one placed
 * before it (the most populous districts keep theirs) or one of the map's overlays (legend,
 * layer toggles, captions). On the wall, the air-quality stations' names go beside their dots first. */
(function () {
    "use strict";

    const OVERLAYS = ".layer-toggles, .legend, .map-caption, .wall-legend, .wall-notice";

    function mapOf(gd) {
        const fl = gd._fullLayout;
        return fl && fl.map && fl.map._subplot && fl.map._subplot.map;
    }

    function labelsTrace(gd) {
        return (gd.data || []).find((t) => t && t.meta && Array.isArray(t.meta.labels));
    }

    const shown = (t) => !!t && (t.visible === undefined || t.visible === true);

    // On the wall, the points of a layer whose trace says so (meta.names_on_wall: the air-quality
    // stations) carry their names beside their dots (placed before the
    // district names, never over a dot, another name or an overlay; a name that fits nowhere is left out).
    function placeStations(gd, map, taken) {
        let sbox = gd.__stationBox;
        const st = gd.closest(".wall-map") && (gd.data || []).find((t) => t && t.meta && t.meta.names_on_wall);
        const on = shown(st) && Array.isArray(st.text);
        if (!on) { if (sbox) { sbox.hidden = true; } return; }
        if (!sbox || sbox.parentElement !== map.getContainer()) {
            sbox = gd.__stationBox = document.createElement("div");
            sbox.className = "district-labels station-labels";
            map.getContainer().appendChild(sbox);
        }
        sbox.hidden = false;
        if (sbox.__names !== st.text) {
            sbox.textContent = "";
            for (const name of st.text) {
                const s = document.createElement("span");
                s.className = "station-label";
                s.textContent = name;
                sbox.appendChild(s);
            }
            sbox.__names = st.text;
        }
        const w = sbox.clientWidth, h = sbox.clientHeight;
        const pts = st.text.map((_, i) => map.project([st.lon[i], st.lat[i]]));
        const dot = Math.max(6, ...[].concat(st.marker && st.marker.size || 10)) / 2 + 2;
        pts.forEach((p) => taken.push({l: p.x - dot, r: p.x + dot, t: p.y - dot, b: p.y + dot}));
        pts.forEach((p, i) => {
            const s = sbox.children[i], sw = s.offsetWidth, sh = s.offsetHeight;
            let spot = null;
            for (const l of [p.x + dot + 2, p.x - dot - 2 - sw]) {  // right of its dot, else left of it
                const r = {l: l, r: l + sw, t: p.y - sh / 2, b: p.y + sh / 2};
                const inside = r.l >= 0 && r.t >= 0 && r.r <= w && r.b <= h;
                if (inside && !taken.some((o) => r.l < o.r && o.l < r.r && r.t < o.b && o.t < r.b)) { spot = r; break; }
            }
            s.style.visibility = spot ? "visible" : "hidden";
            if (spot) {
                s.style.transform = "translate(" + Math.round(spot.l) + "px," + Math.round(spot.t) + "px)";
                taken.push(spot);
            }
        });
    }

    function place(gd) {
        const map = gd.__districtMap, box = gd.__districtBox;
        if (!map || !box) { return; }
        const tr = labelsTrace(gd);
        const on = shown(tr);
        box.hidden = !on;
        if (!on) {
            placeStations(gd, map, []);
            return;
        }
        if (box.__labels !== tr.meta.labels) {  // a new figure: new spans
            box.textContent = "";
            for (const [name] of tr.meta.labels) {
                const s = document.createElement("span");
                s.className = "district-label";
                s.textContent = name;
                box.appendChild(s);
            }
            box.__labels = tr.meta.labels;
        }
        const w = box.clientWidth, h = box.clientHeight, at = box.getBoundingClientRect();
        // the map's own overlays (layer toggles, legend, captions) count as names already placed
        const wrap = gd.closest(".map-wrap, .wall-map") || gd.parentElement;
        const taken = [...wrap.querySelectorAll(OVERLAYS)].map((e) => e.getBoundingClientRect())
            .filter((r) => r.width > 0 && r.height > 0)
            .map((r) => ({l: r.left - at.left, r: r.right - at.left, t: r.top - at.top, b: r.bottom - at.top}));
        placeStations(gd, map, taken);
        tr.meta.labels.forEach(([, lon, lat], i) => {
            const s = box.children[i];
            const p = map.project([lon, lat]);
            const sw = s.offsetWidth, sh = s.offsetHeight;
            const r = {l: p.x - sw / 2, r: p.x + sw / 2, t: p.y - sh / 2, b: p.y + sh / 2};
            const inside = r.l >= 0 && r.t >= 0 && r.r <= w && r.b <= h;
            const clash = taken.some((o) => r.l < o.r && o.l < r.r && r.t < o.b && o.t < r.b);
            const show = inside && !clash;
            s.style.visibility = show ? "visible" : "hidden";
            s.style.transform = "translate(" + Math.round(r.l) + "px," + Math.round(r.t) + "px)";
            if (show) { taken.push(r); }
        });
    }

    function hook(gd) {
        const map = mapOf(gd);
        if (!map || !labelsTrace(gd)) { return; }
        if (gd.__districtMap !== map) {  // plotly made (or remade) the map
            gd.__districtMap = map;
            if (gd.__districtBox) { gd.__districtBox.remove(); }  // the names over the map it replaced
            const box = document.createElement("div");
            box.className = "district-labels";
            map.getContainer().appendChild(box);
            gd.__districtBox = box;
            map.on("move", () => place(gd));
            map.on("resize", () => place(gd));
            if (!gd.__districtHooked) {  // a layer toggle or a new figure
                gd.__districtHooked = true;
                gd.on("plotly_afterplot", () => place(gd));
            }
        }
        place(gd);
    }

    // where the map's overlays are: a legend that grows or a notice that appears after the names were
    // placed would otherwise cover some of them until the map next moves
    function overlays(gd) {
        const wrap = gd.closest(".map-wrap, .wall-map") || gd.parentElement;
        return [...wrap.querySelectorAll(OVERLAYS)].map((e) => {
            const r = e.getBoundingClientRect();
            return [r.left, r.top, r.right, r.bottom].map(Math.round).join(",");
        }).join(";");
    }

    // Dash mounts (and remounts) graphs at any time: look for new maps a few times a second, and
    // place the names again when the overlays moved or changed size
    setInterval(() => document.querySelectorAll(".js-plotly-plot").forEach((gd) => {
        if (gd.__districtMap !== mapOf(gd)) {
            hook(gd);
        } else if (gd.__districtMap) {
            const now = overlays(gd);
            if (now !== gd.__overlaysAt) {
                gd.__overlaysAt = now;
                place(gd);
            }
        }
    }), 250);
}());
