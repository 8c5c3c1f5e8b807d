"""The sign-in page: plain HTML in the product's look (``assets/theme.css``, ``assets/login.css``), no script."""
from __future__ import annotations

import html


def login_html(csrf: str, next_path: str = "/", error: str | None = None, name: str = "",
               city: str | None = None) -> str:
    """Return the sign-in page; ``error`` (escaped) says why the last attempt failed."""
    e = html.escape
    problem = f"<p class='login-error' role='alert'>{e(error)}</p>" if error else ""
    where = f" · {e(city)}" if city else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · City Panorama</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/theme.css"><link rel="stylesheet" href="/assets/login.css"></head>
<body class="login-page"><main class="login-box">
<h1 class="login-title">City Panorama{where}</h1>
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
