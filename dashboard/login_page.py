"""The sign-in page: plain HTML in the product's look (``assets/theme.css``, ``assets/login.css``), no script;
and the corner of the screens that says who is signed in (a sign-out form, or a sign-in link)."""
from __future__ import annotations

import html
from urllib.parse import quote


def login_html(csrf: str, next_path: str = "/", error: str | None = None, name: str = "",
               city: str | None = None) -> str:
    """Return the sign-in page; ``error`` (escaped) says why the last attempt failed."""
    e = html.escape
    problem = f"<p class='login-error' role='alert'>{e(error)}</p>" if error else ""
    brand = f"<p class='login-product'>City Panorama</p><h1 class='login-title'>{e(city)}</h1>" if city \
        else "<h1 class='login-title'>City Panorama</h1>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · {e(city) + ' · ' if city else ''}City Panorama</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/theme.css"><link rel="stylesheet" href="/assets/login.css"></head>
<body class="login-page"><main class="login-box">
{brand}
<p class="login-sub">Sign in to the operations dashboard.</p>{problem}
<form method="post" action="/login" class="login-form">
<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="next" value="{e(next_path)}">
<label for="login-name">Name</label>
<input id="login-name" name="name" autocomplete="username" required maxlength="64" value="{e(name)}" autofocus>
<label for="login-password">Password</label>
<input id="login-password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def account_corner(next_path: str = "/"):
    """Return the manager's account corner: the signed-in name and a Sign out button (a plain form
    POST to /logout carrying the CSRF token), a Sign in link for the anonymous viewer, nothing for a
    wall device, a signed embed or outside a request. Built per request: the layout is never shared."""
    from dash import html as dh

    from dashboard.access import current

    p = current()
    if p is None or p.kind not in ("user", "anonymous"):
        return None
    if p.kind == "anonymous":
        return dh.Div(dh.A("Sign in", href="/login?next=" + quote(next_path, safe="/"), className="btn account-signin"),
                      className="account")
    from flask import current_app

    token = current_app.extensions["panorama_access"].csrf_token()
    return dh.Div([
        dh.Span(p.name, className="account-name", title=f"signed in as {p.name} ({p.role})"),
        dh.Form(dh.Button("Sign out", type="submit", name="csrf", value=token, className="btn account-signout"),
                method="post", action="/logout", className="account-form"),
    ], className="account")


def wall_user():
    """Return the wall's small signed-in name (signing out is the manager's), or None."""
    from dash import html as dh

    from dashboard.access import current

    p = current()
    if p is None or p.kind != "user":
        return None
    return dh.Span(p.name, className="wall-user", title=f"signed in as {p.name}")
