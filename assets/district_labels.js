/* City Panorama: district names on the map, as HTML over the map canvas.
 *
 * The offline map style has no glyphs, so MapLibre cannot draw text. The districts trace carries
 * its labels in meta.labels ([name, lon, lat], most populous first); this script keeps one
 * absolutely placed <span> per name over every plotly map that has such a trace, moves them with
 * the map, hides them with the districts layer, and drops a name that would overlap one placed
 * before it (the most populous districts keep theirs) or one of the map's overlays (legend,
 * layer toggles, captions). */
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

    function place(gd) {
        const map = gd.__districtMap, box = gd.__districtBox;
        if (!map || !box) { return; }
        const tr = labelsTrace(gd);
        const on = !!tr && (tr.visible === undefined || tr.visible === true);
        box.hidden = !on;
        if (!on) { return; }
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

    // Dash mounts (and remounts) graphs at any time: look for new maps a few times a second
    setInterval(() => document.querySelectorAll(".js-plotly-plot").forEach((gd) => {
        if (gd.__districtMap !== mapOf(gd)) { hook(gd); }
    }), 250);
}());
