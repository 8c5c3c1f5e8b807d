"""``/admin``: users, wall devices, signed embeds, the embed key and the audit log, for admins.

Server-rendered HTML in the product's look (``assets/theme.css``, ``assets/admin.css``), no script
(the CSP allows none inline). Every form posts its ``csrf`` field (checked by
:meth:`dashboard.web_access.Gate.check_form_csrf`) and every change is audited with the signed-in
admin as actor. A generated password, a wall's claim URL and a signed link are shown once, in the
answer to the form that made them (``Cache-Control: no-store``); the store keeps none of them.
"""
from __future__ import annotations

import html
import json
import time
from datetime import datetime

from flask import Blueprint, Response, current_app, request

from dashboard import access, accounts
from dashboard.access import ADMIN, ROLES, Rule

PATH = "/admin"
bp = Blueprint("admin", __name__)
AUDIT_ROWS = 100
WINDOWS = ("1h", "24h", "7d")
EXPIRIES = ("1d", "7d", "30d", "90d", "366d")

for _endpoint, _why in {
    "admin.page_view": "the admin page: users, wall devices, signed embeds, embed key, audit log",
    "admin.user_add": "add a user (a generated password is shown once)",
    "admin.user_role": "change a user's role and district scope",
    "admin.user_disable": "disable a user (their sessions end)",
    "admin.user_enable": "enable a user",
    "admin.user_reset": "reset a user's password (shown once)",
    "admin.device_add": "register a wall (its claim URL is shown once)",
    "admin.device_revoke": "revoke a wall's token",
    "admin.embed_sign": "sign an embed link",
    "admin.embed_rotate": "rotate the embed-signing key, after a confirmation",
}.items():
    access.register(access.ROUTES, _endpoint, Rule(ADMIN, why=_why))

e = html.escape


def _gate():
    return current_app.extensions["panorama_access"]


def _live():
    return current_app.extensions["panorama"]


def _actor() -> str:
    p = access.current()
    return p.name if p is not None else "?"


def _when(ts: int | None, tz) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M") if ts else ""


def _csrf() -> str:
    return f"<input type='hidden' name='csrf' value='{e(_gate().csrf_token())}'>"


def _form(action: str, body: str, cls: str = "") -> str:
    return f"<form method='post' action='{PATH}/{action}' class='admin-form {cls}'>{_csrf()}{body}</form>"


def _options(values, selected=None, labels=None) -> str:
    labels = labels or {}
    return "".join(f"<option value='{e(v)}'{' selected' if v == selected else ''}>{e(labels.get(v, v))}</option>"
                   for v in values)


def _districts_field(names: dict, name: str = "districts", current=None, all_label: str = "All districts") -> str:
    """A multiple choice of districts (none chosen: every district)."""
    cur = set(current or ())
    opts = "".join(f"<option value='{e(i)}'{' selected' if i in cur else ''}>{e(n)}</option>" for i, n in names.items())
    size = min(4, max(2, len(names)))
    return (f"<select name='{name}' multiple size='{size}' aria-label='Districts ({e(all_label)} when none chosen)'>"
            f"{opts}</select>")


def _once(title: str, value: str, note: str) -> str:
    """The box showing a secret once: a password, a claim URL, a signed link."""
    return (f"<div class='admin-once' role='status'><strong>{e(title)}</strong>"
            f"<input class='admin-secret' readonly value='{e(value)}' aria-label='{e(title)}'>"
            f"<span class='admin-note'>{e(note)}</span></div>")


def _users(names: dict, tz) -> str:
    rows = []
    for u in accounts.list_users(_live().writer()):
        scope = ", ".join(names.get(d, d) for d in u.districts) if u.districts else "all"
        state = "disabled" if u.disabled else "active"
        toggle = (_form("users/enable", f"<input type='hidden' name='name' value='{e(u.name)}'>"
                        "<button class='btn'>Enable</button>") if u.disabled else
                  _form("users/disable", f"<input type='hidden' name='name' value='{e(u.name)}'>"
                        "<button class='btn btn-warn'>Disable</button>"))
        role = _form("users/role", f"<input type='hidden' name='name' value='{e(u.name)}'>"
                     f"<select name='role' aria-label='Role of {e(u.name)}'>{_options(ROLES, u.role)}</select>"
                     f"{_districts_field(names, current=u.districts)}<button class='btn'>Set</button>", "inline")
        role = f"<details class='admin-more'><summary class='btn'>Role…</summary>{role}</details>"
        reset = _form("users/reset", f"<input type='hidden' name='name' value='{e(u.name)}'>"
                      "<button class='btn'>Reset password</button>")
        rows.append(f"<tr class='{state}'><td class='strong'>{e(u.name)}</td><td>{e(u.role)}</td><td>{e(scope)}</td>"
                    f"<td>{state}</td><td class='when'>{_when(u.last_login_at, tz) or 'never'}</td>"
                    f"<td><div class='actions'>{role}{toggle}{reset}</div></td></tr>")
    add = _form("users/add", "<label>Name <input name='name' required maxlength='64' autocomplete='off'></label>"
                f"<label>Role <select name='role'>{_options(ROLES, 'viewer')}</select></label>"
                f"<label>Districts {_districts_field(names)}</label>"
                "<label>Password <input name='password' type='password' minlength='10' maxlength='1024' "
                "autocomplete='new-password' placeholder='empty: generate one'></label>"
                "<button class='btn btn-primary'>Add user</button>", "add")
    return (f"<section class='admin-card' id='users'><h2>Users</h2><div class='admin-scroll'><table>"
            "<thead><tr><th>Name</th><th>Role</th><th>Districts</th><th>State</th><th>Last sign-in</th>"
            f"<th>Change</th></tr></thead><tbody>{''.join(rows) or _empty(6, 'no users yet')}</tbody></table>"
            f"</div><h3>Add a user</h3>{add}<p class='admin-note'>No district chosen: the user sees every "
            "district. A role change, a reset or disabling ends the user's sessions.</p></section>")


def _empty(cols: int, text: str) -> str:
    return f"<tr><td colspan='{cols}' class='admin-none'>{e(text)}</td></tr>"


def _devices(names: dict, tz) -> str:
    now = time.time()
    rows = []
    for d in accounts.list_devices(_live().writer()):
        scope = ", ".join(names.get(x, x) for x in d.districts) if d.districts else "all"
        if d.revoked_at:
            state, action = f"revoked {_when(d.revoked_at, tz)}", ""
        else:
            state = "active"
            action = _form("devices/revoke", f"<input type='hidden' name='id' value='{d.id}'>"
                           "<button class='btn btn-warn'>Revoke</button>")
        rows.append(f"<tr class='{'revoked' if d.revoked_at else 'active'}'><td>{d.id}</td>"
                    f"<td class='strong'>{e(d.name)}</td><td><code>{e(d.path)}</code></td><td>{e(scope)}</td>"
                    f"<td class='when'>{_when(d.created_at, tz)}</td><td class='seen'>{accounts.seen_text(d.last_seen_at, now)}</td>"
                    f"<td>{e(state)}</td><td><div class='actions'>{action}</div></td></tr>")
    add = _form("devices/add", "<label>Name <input name='name' required maxlength='100' "
                "placeholder='control room left'></label><label>Wall URL <input name='url' value='/wall' "
                "maxlength='300' placeholder='/wall?district=…&amp;rotate=30'></label>"
                "<button class='btn btn-primary'>Add wall</button>", "add")
    return ("<section class='admin-card' id='devices'><h2>Wall devices</h2><div class='admin-scroll'><table>"
            "<thead><tr><th>Id</th><th>Name</th><th>Wall URL</th><th>Districts</th><th>Created</th>"
            "<th>Last refreshed</th><th>State</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows) or _empty(8, 'no wall devices yet')}</tbody></table></div>"
            f"<h3>Add a wall</h3>{add}<p class='admin-note'>Open the claim URL once on the wall's browser: "
            "it keeps the token in a cookie and shows that wall only.</p></section>")


def _embeds(names: dict) -> str:
    from dashboard.export import panel_ids

    sign = _form("embeds/sign",
                 f"<label>Panel <select name='panel'>{_options(panel_ids())}</select></label>"
                 f"<label>District <select name='district'><option value=''>Whole city</option>"
                 f"{_options(list(names), labels=names)}</select></label>"
                 f"<label>Window <select name='window'>{_options(WINDOWS, '24h')}</select></label>"
                 f"<label>Theme <select name='theme'>{_options(('dark', 'light'))}</select></label>"
                 "<label>Layers <input name='layers' placeholder='map only: traffic,air_quality'></label>"
                 f"<label>Expires in <select name='expires'>{_options(EXPIRIES, '30d')}</select></label>"
                 "<button class='btn btn-primary'>Sign link</button>", "add")
    rotate = _form("embeds/rotate", "<button class='btn btn-warn'>Rotate the embed key…</button>")
    return ("<section class='admin-card wide' id='embeds'><h2>Signed embeds</h2>"
            f"<div class='admin-split'><div>{sign}<p class='admin-note'>A signed link shows one panel with exactly "
            "these parameters, without signing in, until it expires.</p></div><div><h3>Embed key</h3>"
            f"{rotate}<p class='admin-note'>Rotating the key stops every signed link made before (you are asked "
            "to confirm).</p></div></div></section>")


def _audit(tz) -> str:
    rows = []
    for r in accounts.audit_tail(_live().writer(), AUDIT_ROWS):
        detail = json.dumps(r["detail"], separators=(", ", ": ")) if r.get("detail") else ""
        rows.append(f"<tr class='{'failed' if r['action'] == 'login.failed' else ''}'><td class='when'>{_when(r['at'], tz)}</td>"
                    f"<td>{e(r['actor'] or '')}</td><td>{e(r['action'])}</td><td>{e(r['target'] or '')}</td>"
                    f"<td class='detail'>{e(detail[:200])}</td><td>{e(r['ip'] or '')}</td></tr>")
    return (f"<section class='admin-card wide' id='audit'><h2>Audit log <span class='admin-note'>last "
            f"{AUDIT_ROWS}</span></h2><div class='admin-scroll'><table><thead><tr><th>When</th><th>Who</th>"
            "<th>Action</th><th>Target</th><th>Detail</th><th>Address</th></tr></thead>"
            f"<tbody>{''.join(rows) or _empty(6, 'nothing yet')}</tbody></table></div></section>")


def page(notice: str = "", error: str = "", status: int = 200) -> Response:
    """Return the admin page; ``notice`` (HTML made here) and ``error`` (text) above the sections."""
    live = _live()
    tz = live.tz()
    d = live.districts()
    names = dict(zip(d["id"], d["name"]))
    city = live.meta().get("city", "City")
    problem = f"<p class='admin-error' role='alert'>{e(error)}</p>" if error else ""
    body = (f"{_shell_head(city)}<main class='admin-main'>{problem}{notice}"
            f"{_users(names, tz)}{_devices(names, tz)}{_embeds(names)}{_audit(tz)}</main></body></html>")
    return _answer(body, status)


def _shell_head(city: str, title: str = "Administration") -> str:
    who = access.current()
    signout = (f"<form method='post' action='/logout' class='admin-signout'>{_csrf()}"
               f"<span class='admin-who'>{e(who.name if who else '')}</span>"
               "<button class='btn'>Sign out</button></form>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(title)} · {e(city)} · City Panorama</title>"
            "<link rel='icon' href='/assets/favicon.svg' type='image/svg+xml'>"
            "<link rel='stylesheet' href='/assets/theme.css'><link rel='stylesheet' href='/assets/admin.css'>"
            "</head><body class='admin-page'><header class='topbar'><div class='brand'>"
            f"<span class='city-name'>{e(city)}</span><span class='product'>City Panorama · {e(title)}</span></div>"
            "<nav class='admin-nav'><a href='#users'>Users</a><a href='#devices'>Walls</a>"
            "<a href='#embeds'>Embeds</a><a href='#audit'>Audit log</a><a href='/'>Dashboard</a></nav>"
            f"{signout}</header>")


def _answer(body: str, status: int = 200) -> Response:
    resp = Response(body, status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"  # a password or link shown once stays out of every cache
    return resp


def _posted(fn):
    """Check the form's CSRF field, run ``fn`` and show the page with its notice (or its one-line error);
    the gate forgets what it remembered, so a change applies at once in this process."""
    from dashboard.export import UnknownPanel
    from dashboard.params import BadParameter
    from dashboard.web_access import Denied

    gate = _gate()
    try:
        gate.check_form_csrf()
    except Denied as exc:
        return _answer(f"{_shell_head('City')}<main class='admin-main'><p class='admin-error' role='alert'>"
                       f"{e(str(exc))}</p></main></body></html>", 403)
    try:
        notice = fn()
    except (accounts.AccountError, UnknownPanel, BadParameter, ValueError) as exc:
        return page(error=str(exc), status=400)
    gate.forget()
    return page(notice=notice)


def _done(text: str) -> str:
    return f"<p class='admin-done' role='status'>{e(text)}</p>"


def _form_districts() -> list[str] | None:
    return [x for x in request.form.getlist("districts") if x] or None


def _name() -> str:
    return request.form.get("name", "")[:64]


@bp.get(PATH)
def page_view():
    return page()


@bp.post(PATH + "/users/add")
def user_add():
    def run():
        u, password = accounts.add_user(_live().writer(), _name(), request.form.get("role", ""),
                                        request.form.get("password") or None, _form_districts(), actor=_actor())
        if request.form.get("password"):
            return _done(f"user {u.name} added as {u.role} with the password you typed")
        return _once(f"Password of {u.name}", password, "shown only now: give it to them; they may change it")
    return _posted(run)


@bp.post(PATH + "/users/role")
def user_role():
    def run():
        districts = _form_districts()
        u = accounts.set_role(_live().writer(), _name(), request.form.get("role", ""), districts,
                              all_districts=districts is None, actor=_actor())
        scope = ", ".join(u.districts) if u.districts else "every district"
        return _done(f"{u.name} is now {u.role} ({scope}); their sessions ended")
    return _posted(run)


@bp.post(PATH + "/users/disable")
def user_disable():
    return _posted(lambda: _done(f"{accounts.set_disabled(_live().writer(), _name(), True, _actor()).name} "
                                 "is disabled; their sessions ended"))


@bp.post(PATH + "/users/enable")
def user_enable():
    return _posted(lambda: _done(f"{accounts.set_disabled(_live().writer(), _name(), False, _actor()).name} "
                                 "is enabled"))


@bp.post(PATH + "/users/reset")
def user_reset():
    def run():
        name = _name()
        password = accounts.reset_password(_live().writer(), name, actor=_actor())
        return _once(f"New password of {name}", password, "shown only now; their sessions ended")
    return _posted(run)


@bp.post(PATH + "/devices/add")
def device_add():
    def run():
        d, token = accounts.add_device(_live().writer(), request.form.get("name", ""),
                                       request.form.get("url", "/wall") or "/wall", actor=_actor())
        return _once(f"Claim URL of wall {d.id} ({d.name}), showing {d.path}", f"{request.host_url}device/{token}",
                     "shown only now: open it once on the wall's browser")
    return _posted(run)


@bp.post(PATH + "/devices/revoke")
def device_revoke():
    def run():
        try:
            did = int(request.form.get("id", ""))
        except ValueError:
            raise accounts.AccountError("no such device") from None
        d = accounts.revoke_device(_live().writer(), did, actor=_actor())
        return _done(f"wall {d.id} ({d.name}) revoked: it says so within one refresh")
    return _posted(run)


@bp.post(PATH + "/embeds/sign")
def embed_sign():
    def run():
        from dashboard import signing

        f = request.form
        args = {k: f.get(k) for k in ("district", "window", "theme", "layers")}
        link, expires_at = signing.make_link(_live(), _gate().secret, f.get("panel", ""), args,
                                             f.get("expires", "30d"), request.host_url, _actor())
        return _once(f"Signed link to {f.get('panel')}", link,
                     f"valid until {_when(expires_at, _live().tz())}; rotating the embed key stops it sooner")
    return _posted(run)


@bp.post(PATH + "/embeds/rotate")
def embed_rotate():
    def run():
        if request.form.get("confirm") != "rotate":
            raise _Confirm()
        accounts.rotate_embed_key(_live().writer(), actor=_actor())
        return _done("embed key rotated: every signed link made before answers 403 now")
    try:
        return _posted(run)
    except _Confirm:
        return _answer(f"{_shell_head(_live().meta().get('city', 'City'), 'Confirm')}<main class='admin-main'>"
                       "<section class='admin-card admin-confirm'><h2>Rotate the embed key?</h2><p>Every signed "
                       "link made so far stops working at once (it answers 403); pages that embed them show an "
                       "error until you send them new links.</p>"
                       + _form("embeds/rotate", "<input type='hidden' name='confirm' value='rotate'>"
                               "<button class='btn btn-warn'>Rotate the key</button>"
                               f"<a class='btn' href='{PATH}#embeds'>Cancel</a>", "inline")
                       + "</section></main></body></html>")


class _Confirm(Exception):
    """The rotation was asked for without its confirmation: show the confirmation step."""


def init_app(server) -> None:
    server.register_blueprint(bp)
