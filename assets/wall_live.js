/* City Panorama: the wall notes when each answer to its live refresh arrives.
 *
 * The wall's "STALE since" banner must not wait for the server to say it is down (a stopped server
 * says nothing): the browser keeps the time of the last successful answer to a refresh request
 * (window.panoramaWallOk) and the wall's clock (pages/wall.py, _CLOCK_JS) shows the banner when
 * none has come for two refresh intervals. Any answer counts, however it came back: the wall's
 * request is one that the "wall-tick" interval triggered. */
(function () {
    "use strict";
    if (!window.fetch || window.fetch.__panoramaWall) { return; }
    const fetch0 = window.fetch;
    const wrapped = function (input, init) {
        const answer = fetch0.apply(this, arguments);
        try {
            const url = typeof input === "string" ? input : (input && input.url) || "";
            const body = init && typeof init.body === "string" ? init.body : "";
            if (url.indexOf("_dash-update-component") >= 0 && body.indexOf('"wall-tick.n_intervals"') >= 0) {
                answer.then((r) => { if (r.ok) { window.panoramaWallOk = Date.now(); } }, () => {});
            }
        } catch (e) { /* never in the way of the request */ }
        return answer;
    };
    wrapped.__panoramaWall = true;
    window.fetch = wrapped;
}());
