/* City Panorama: the wall notes when each answer to its live refresh arrives.
 *
 * The wall's "STALE since" banner must not wait for the server to say it is down (a stopped server
 * says nothing): the browser keeps the time of the last successful answer to a refresh request
 * (window.panoramaWallOk) and the wall's clock (pages/wall.py, _CLOCK_JS) shows the banner when
 * none has come for two refresh intervals. Any answer counts, however it came back: the wall's
 * request is one that the "wall-tick" interval triggered.
 *
 * A refresh answered 401 or 403 means this screen may no longer see the wall (its device token was
 * revoked, its session ended): the wall hides its numbers behind the server's one-line reason
 * (".wall-revoked", wall.css) instead of freezing on the last picture. An answer that succeeds
 * again takes the message away. */
(function () {
    "use strict";
    if (!window.fetch || window.fetch.__panoramaWall) { return; }
    const REVOKED = "This screen's access was revoked \u2014 ask an administrator";

    function refused(reason) {
        let box = document.getElementById("wall-revoked");
        if (!box) {
            box = document.createElement("div");
            box.id = "wall-revoked";
            box.className = "wall-revoked";
            box.setAttribute("role", "alert");
            const p = document.createElement("p");
            p.className = "wall-revoked-text";
            box.appendChild(p);
            document.body.appendChild(box);
        }
        const text = reason ? reason.charAt(0).toUpperCase() + reason.slice(1) : REVOKED;
        box.firstChild.textContent = text;
        window.panoramaWallRefused = window.panoramaWallRefused || Date.now();
        document.documentElement.classList.add("panorama-revoked");
    }

    function allowed() {
        window.panoramaWallRefused = 0;
        document.documentElement.classList.remove("panorama-revoked");
    }

    const fetch0 = window.fetch;
    const wrapped = function (input, init) {
        const answer = fetch0.apply(this, arguments);
        try {
            const url = typeof input === "string" ? input : (input && input.url) || "";
            const body = init && typeof init.body === "string" ? init.body : "";
            if (url.indexOf("_dash-update-component") >= 0 && body.indexOf('"wall-tick.n_intervals"') >= 0) {
                answer.then((r) => {
                    if (r.ok) {
                        window.panoramaWallOk = Date.now();
                        allowed();
                    } else if (r.status === 401 || r.status === 403) {
                        r.clone().json().then((j) => refused(j && typeof j.error === "string" ? j.error : ""),
                                              () => refused(""));
                    }
                }, () => {});
            }
        } catch (e) { /* never in the way of the request */ }
        return answer;
    };
    wrapped.__panoramaWall = true;
    window.fetch = wrapped;
}());
