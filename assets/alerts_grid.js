/* City Panorama: the alerts grid never scrolls sideways.
 *
 * The columns share the grid's width (flex) down to their minimum widths; when the grid is too
 * narrow for every column at its minimum (a 1366-px screen, the map's column beside the KPIs), the
 * columns that say they may go (colDef.context.narrow: 1 goes first, then 2, ...) are hidden, and
 * shown again when the grid widens. Severity, since, place, state and owner always stay. */
(function () {
    "use strict";

    const GRID = "alerts-grid";

    function fit(api, width) {
        const cols = api.getColumns() || [];
        const order = cols.filter((c) => (c.getColDef().context || {}).narrow)
            .sort((a, b) => a.getColDef().context.narrow - b.getColDef().context.narrow);
        let need = cols.reduce((s, c) => s + (c.getColDef().minWidth || 0), 0);
        const hide = new Set();
        for (const c of order) {
            if (need <= width) { break; }
            hide.add(c);
            need -= c.getColDef().minWidth || 0;
        }
        const change = (c) => c.isVisible() === hide.has(c);
        const show = order.filter((c) => !hide.has(c) && change(c));
        const gone = [...hide].filter(change);
        if (show.length) { api.setColumnsVisible(show, true); }
        if (gone.length) { api.setColumnsVisible(gone, false); }
    }

    // Dash mounts (and remounts) the grid at any time: look for it a few times a second
    setInterval(() => {
        const el = document.getElementById(GRID);
        const ag = window.dash_ag_grid;
        if (!el || !ag || !ag.getApi) { return; }
        const body = el.querySelector(".ag-body-viewport") || el.querySelector(".ag-body");
        const width = body ? body.clientWidth : 0;
        if (!width || el.__fitWidth === width) { return; }
        let api;
        try { api = ag.getApi(GRID); } catch (e) { return; }  // not ready yet
        if (!api || (api.isDestroyed && api.isDestroyed())) { return; }
        el.__fitWidth = width;
        fit(api, width);
    }, 250);
}());
