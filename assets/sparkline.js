/* City Panorama: a KPI sparkline as a small SVG image (no plotly graph per card).
 * The same drawing as dashboard/views.py spark_src(): keep the two in step (a browser test
 * compares them). Points are values or null (a gap); x is the index; the y range includes 0. */
window.panoramaSpark = function (points, colour) {
    const W = 120, H = 44;
    const f = (v) => (Math.round(v * 10) / 10).toFixed(1);
    const ys = points.filter((v) => v !== null && v !== undefined);
    let line = "", area = "";
    if (ys.length) {
        const lo = Math.min(0, Math.min(...ys)), hi = Math.max(0, Math.max(...ys));
        const span = (hi - lo) || 1, n = points.length;
        const x = (i) => (n > 1 ? i * W / (n - 1) : W / 2);
        const y = (v) => H - 2 - (v - lo) / span * (H - 4);
        const y0 = y(0);
        let run = [];
        const flush = () => {
            if (run.length > 1) {
                const pts = run.map(([i, v]) => f(x(i)) + " " + f(y(v))).join(" L ");
                line += "M " + pts + " ";
                area += "M " + f(x(run[0][0])) + " " + f(y0) + " L " + pts + " L " +
                        f(x(run[run.length - 1][0])) + " " + f(y0) + " Z ";
            }
            run = [];
        };
        points.forEach((v, i) => { if (v === null || v === undefined) { flush(); } else { run.push([i, v]); } });
        flush();
    }
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + W + ' ' + H +
        '" preserveAspectRatio="none"><path d="' + area.trim() + '" fill="rgba(127,140,157,0.12)"/><path d="' +
        line.trim() + '" fill="none" stroke="' + colour +
        '" stroke-width="2" stroke-linejoin="round" vector-effect="non-scaling-stroke"/></svg>';
    return "data:image/svg+xml," + encodeURIComponent(svg);
};
