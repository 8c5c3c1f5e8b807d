"""Users, sessions, wall devices, signed embeds and the audit log, in the store.

Passwords are kept as Argon2id hashes (argon2-cffi's defaults, RFC 9106), tokens (sessions,
devices) as SHA-256 digests: the store never holds a secret that signs anyone in. Every function
takes an engine (the writer) and commits its own transaction. No Flask here: the CLI, the admin
page and the request hooks share these.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dashboard.access import ROLES
from dashboard.store.schema import audit_log, devices, meta, sessions, users

_HASHER = PasswordHasher()
#: A hash of a random password: verifying against it costs what a real check costs, so a sign-in
#: with an unknown name takes as long as one with a wrong password (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
#: The ``meta`` row holding the embed-signing key's random part; rotating it revokes every signed URL.
EMBED_KEY = "embed_key"
#: The ``meta`` row that changes whenever a credential is revoked or changes what it may do (sign-out,
#: disable, new password, role or scope, revoked device, rotated embed key): every process checks it
#: about once a second and forgets who it remembered when it changed (``dashboard.web_access``).
ACCESS_REVISION = "access_revision"


class AccountError(ValueError):
    """A request about an account cannot be done; the message is one line, safe to show."""


def digest(token: str) -> str:
    """Return the SHA-256 hex digest a token is kept as."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_password() -> str:
    """Return a random password (about 96 bits), easy to type from a terminal."""
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise AccountError("a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {str(role)[:20]!r}: choose one of {', '.join(ROLES)}")
    return role


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_districts(conn, districts) -> list[str] | None:
    """Return the district ids of a scope (None: every district); raise AccountError for an unknown one."""
    if districts is None:
        return None
    from dashboard.store.schema import districts as dtable

    want = [d for d in dict.fromkeys(districts) if d]
    if not want:
        return None
    known = set(conn.execute(select(dtable.c.id)).scalars())
    bad = [d for d in want if d not in known]
    if bad:
        raise AccountError(f"unknown district {bad[0][:60]!r}: choose from {', '.join(sorted(known)) or '(none)'}")
    return want


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    districts: tuple[str, ...] | None
    disabled: bool
    created_at: int
    last_login_at: int | None


def _user(row) -> User:
    return User(row.id, row.name, row.role, tuple(row.districts) if row.districts else None, bool(row.disabled),
                row.created_at, row.last_login_at)


def audit(conn, action: str, actor: str | None, target: str | None = None, detail: dict | None = None,
          ip: str | None = None, now: float | None = None) -> None:
    """Append one row to the audit log (in the caller's transaction)."""
    conn.execute(insert(audit_log).values(at=int(now or time.time()), actor=(actor or "")[:100] or None,
                                          action=action[:40], target=(target or "")[:200] or None,
                                          detail=detail or None, ip=(ip or "")[:64] or None))


def add_user(engine, name: str, role: str, password: str | None = None, districts=None,
             actor: str | None = None) -> tuple[User, str]:
    """Add a user; return it and its password (a generated one when ``password`` is None)."""
    _check_name(name)
    _check_role(role)
    password = _check_password(password) if password is not None else new_password()
    now = int(time.time())
    with engine.begin() as conn:
        scope = check_districts(conn, districts)
        if conn.execute(select(users.c.id).where(func.lower(users.c.name) == name.lower())).first():
            raise AccountError(f"a user named {name!r} already exists")
        uid = conn.execute(insert(users).values(name=name, role=role, districts=scope,
                                                password_hash=hash_password(password), disabled=0,
                                                created_at=now, password_set_at=now)).inserted_primary_key[0]
        audit(conn, "user.add", actor, name, {"role": role, "districts": scope}, now=now)
        row = conn.execute(select(users).where(users.c.id == uid)).one()
    return _user(row), password


def list_users(engine) -> list[User]:
    with engine.connect() as conn:
        return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]


def get_user(conn, name: str):
    """Return a user's row by name (case-insensitive), or None."""
    return conn.execute(select(users).where(func.lower(users.c.name) == str(name).lower())).first()


def principal_of(engine, name: str):
    """Return the principal a command acts as for ``--as NAME`` (their role and districts); raise
    :class:`AccountError` for an unknown or disabled user."""
    from dashboard.access import Principal

    with engine.connect() as conn:
        u = _user(_require(conn, name))
    if u.disabled:
        raise AccountError(f"user {u.name!r} is disabled")
    return Principal("user", u.name, u.role, u.districts, user_id=u.id)


def _require(conn, name: str):
    row = get_user(conn, name)
    if row is None:
        raise AccountError(f"no user named {str(name)[:64]!r}")
    return row


def _end_sessions(conn, user_id: int, now: int) -> None:
    conn.execute(update(sessions).where(sessions.c.user_id == user_id, sessions.c.ended_at.is_(None))
                 .values(ended_at=now))
    bump_access(conn)


def bump_access(conn) -> None:
    """Change the access revision in ``conn``'s transaction: every process drops the principals it
    remembers once it sees the change (within ``web_access.REMEMBER_S``)."""
    value = secrets.token_hex(8)
    if conn.execute(update(meta).where(meta.c.key == ACCESS_REVISION).values(value=value)).rowcount:
        return
    try:
        with conn.begin_nested():  # the first change ever: the row is made (another writer may race us)
            conn.execute(insert(meta).values(key=ACCESS_REVISION, value=value))
    except IntegrityError:
        conn.execute(update(meta).where(meta.c.key == ACCESS_REVISION).values(value=value))


def access_revision(engine) -> str | None:
    """Return the current access revision (None before the first change)."""
    with engine.connect() as conn:
        return conn.execute(select(meta.c.value).where(meta.c.key == ACCESS_REVISION)).scalar()


def set_role(engine, name: str, role: str, districts=None, all_districts: bool = False,
             actor: str | None = None) -> User:
    """Change a user's role and, when given, district scope; their sessions end (sign in again)."""
    _check_role(role)
    now = int(time.time())
    with engine.begin() as conn:
        row = _require(conn, name)
        values = {"role": role}
        if all_districts:
            values["districts"] = None
        elif districts:
            values["districts"] = check_districts(conn, districts)
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
        _end_sessions(conn, row.id, now)
        audit(conn, "user.set_role", actor, row.name, {"role": role, "districts": values.get("districts", row.districts)},
              now=now)
        return _user(conn.execute(select(users).where(users.c.id == row.id)).one())


def set_disabled(engine, name: str, disabled: bool = True, actor: str | None = None) -> User:
    """Disable (or enable) a user; a disabled user's sessions end at once."""
    now = int(time.time())
    with engine.begin() as conn:
        row = _require(conn, name)
        conn.execute(update(users).where(users.c.id == row.id).values(disabled=int(disabled)))
        if disabled:
            _end_sessions(conn, row.id, now)
        else:
            bump_access(conn)  # a remembered "no such session" of theirs is forgotten too
        audit(conn, "user.disable" if disabled else "user.enable", actor, row.name, now=now)
        return _user(conn.execute(select(users).where(users.c.id == row.id)).one())


def reset_password(engine, name: str, password: str | None = None, actor: str | None = None) -> str:
    """Set a new password (generated when None) and end the user's sessions; return the password."""
    password = _check_password(password) if password is not None else new_password()
    now = int(time.time())
    with engine.begin() as conn:
        row = _require(conn, name)
        conn.execute(update(users).where(users.c.id == row.id)
                     .values(password_hash=hash_password(password), password_set_at=now))
        _end_sessions(conn, row.id, now)
        audit(conn, "user.reset_password", actor, row.name, now=now)
    return password


def authenticate(engine, name: str, password: str, ip: str | None = None) -> User | None:
    """Return the user if ``password`` is theirs and they are enabled, else None; audit either way."""
    now = int(time.time())
    with engine.begin() as conn:
        row = get_user(conn, name) if isinstance(name, str) and len(name) <= 64 else None
        ok = False
        try:
            ok = _HASHER.verify(row.password_hash if row is not None else _DUMMY_HASH, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        ok = ok and row is not None and not row.disabled
        who = row.name if row is not None else str(name)[:64]
        if not ok:
            why = "unknown user" if row is None else "disabled" if row.disabled else "wrong password"
            audit(conn, "login.failed", who, who, {"reason": why}, ip=ip, now=now)
            return None
        values = {"last_login_at": now}
        if _HASHER.check_needs_rehash(row.password_hash):
            values["password_hash"] = hash_password(password)
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
        audit(conn, "login", row.name, row.name, ip=ip, now=now)
        return _user(conn.execute(select(users).where(users.c.id == row.id)).one())


def start_session(engine, user: User, hours: float) -> str:
    """Return a new session token for ``user`` (a fresh one at every sign-in: no fixation)."""
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(insert(sessions).values(token_hash=digest(token), user_id=user.id, created_at=now,
                                             expires_at=now + int(hours * 3600)))
    return token


def end_session(engine, token: str, ip: str | None = None) -> None:
    now = int(time.time())
    with engine.begin() as conn:
        row = conn.execute(select(sessions.c.user_id, users.c.name).join(users, users.c.id == sessions.c.user_id)
                           .where(sessions.c.token_hash == digest(token))).first()
        conn.execute(update(sessions).where(sessions.c.token_hash == digest(token)).values(ended_at=now))
        bump_access(conn)
        if row is not None:
            audit(conn, "logout", row.name, row.name, ip=ip, now=now)


def session_user(conn, token: str, now: float | None = None) -> User | None:
    """Return the user of a live session token, or None (unknown, ended, expired, user disabled)."""
    found = session_of(conn, token, now)
    return None if found is None else found[0]


def session_of(conn, token: str, now: float | None = None) -> tuple[User, int] | None:
    """Return the user of a live session token and when the session expires (epoch s), or None."""
    now = int(now or time.time())
    row = conn.execute(select(users, sessions.c.expires_at.label("session_expires_at"))
                       .join(sessions, users.c.id == sessions.c.user_id)
                       .where(sessions.c.token_hash == digest(token), sessions.c.ended_at.is_(None),
                              sessions.c.expires_at > now, users.c.disabled == 0)).first()
    return None if row is None else (_user(row), int(row.session_expires_at))


# --- wall devices -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Device:
    id: int
    name: str
    path: str
    districts: tuple[str, ...] | None
    created_at: int
    created_by: str | None
    revoked_at: int | None
    last_seen_at: int | None


def _device(row) -> Device:
    return Device(row.id, row.name, row.path, tuple(row.districts) if row.districts else None, row.created_at,
                  row.created_by, row.revoked_at, row.last_seen_at)


def check_wall_url(conn, url: str) -> tuple[str, list[str] | None]:
    """Return (the canonical wall path with its query, its districts) of a wall URL; raise AccountError."""
    from urllib.parse import urlencode, urlsplit

    from dashboard.params import parse_query

    u = urlsplit(str(url or "/wall").strip())
    if u.path.rstrip("/") != "/wall":
        raise AccountError(f"a device shows a wall: its URL is /wall[?district=…&rotate=…], not {u.path[:60]!r}")
    q = parse_query(u.query)
    unknown = set(q) - {"rotate", "focus", "district"}
    if unknown:
        raise AccountError(f"unknown wall parameter {sorted(unknown)[0][:40]!r} (rotate, focus, district)")
    scope = check_districts(conn, [q["district"]]) if q.get("district") else None
    query = urlencode({k: q[k] for k in sorted(q) if q[k]}, safe=",")
    return "/wall" + ("?" + query if query else ""), scope


def add_device(engine, name: str, url: str = "/wall", actor: str | None = None) -> tuple[Device, str]:
    """Register a wall; return it and its token (shown once: only its digest is kept)."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise AccountError("a device name is 1-100 characters")
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    with engine.begin() as conn:
        path, scope = check_wall_url(conn, url)
        did = conn.execute(insert(devices).values(name=name.strip(), token_hash=digest(token), path=path,
                                                  districts=scope, created_at=now, created_by=actor)
                           ).inserted_primary_key[0]
        audit(conn, "device.add", actor, f"{did} {name.strip()}", {"path": path}, now=now)
        return _device(conn.execute(select(devices).where(devices.c.id == did)).one()), token


def list_devices(engine) -> list[Device]:
    with engine.connect() as conn:
        return [_device(r) for r in conn.execute(select(devices).order_by(devices.c.id))]


def revoke_device(engine, device_id: int, actor: str | None = None) -> Device:
    now = int(time.time())
    with engine.begin() as conn:
        row = conn.execute(select(devices).where(devices.c.id == int(device_id))).first()
        if row is None:
            raise AccountError(f"no device {device_id}")
        conn.execute(update(devices).where(devices.c.id == row.id, devices.c.revoked_at.is_(None))
                     .values(revoked_at=now))
        bump_access(conn)
        audit(conn, "device.revoke", actor, f"{row.id} {row.name}", now=now)
        return _device(conn.execute(select(devices).where(devices.c.id == row.id)).one())


def seen_text(at: int | None, now: float | None = None) -> str:
    """Return when a device last refreshed as '12 s ago', '4 min ago' or 'never'."""
    from layers._common import age_text

    return "never" if at is None else age_text((now or time.time()) - at) + " ago"


def device_of(conn, token: str) -> Device | None:
    """Return the live (not revoked) device of a token, or None."""
    row = conn.execute(select(devices).where(devices.c.token_hash == digest(token),
                                             devices.c.revoked_at.is_(None))).first()
    return None if row is None else _device(row)


def touch_devices(engine, seen: dict[int, int]) -> None:
    """Record when devices last refreshed (``seen``: device id → time), in one transaction. A time
    never moves back: each gunicorn worker writes what it saw, and an older note may arrive last."""
    if not seen:
        return
    with engine.begin() as conn:
        for did, at in seen.items():
            conn.execute(update(devices).where(devices.c.id == did, or_(devices.c.last_seen_at.is_(None),
                                                                        devices.c.last_seen_at < at))
                         .values(last_seen_at=at))


# --- signed embeds ------------------------------------------------------------------------------

def embed_key(conn) -> str:
    """Return the random part of the embed-signing key (made on first use)."""
    v = conn.execute(select(meta.c.value).where(meta.c.key == EMBED_KEY)).scalar()
    return v or ""


def rotate_embed_key(engine, actor: str | None = None) -> None:
    """Replace the embed-signing key: every signed URL made before stops working (403)."""
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(meta.delete().where(meta.c.key == EMBED_KEY))
        conn.execute(insert(meta).values(key=EMBED_KEY, value=secrets.token_hex(16)))
        bump_access(conn)
        audit(conn, "embed.rotate_key", actor, None, now=now)


def ensure_embed_key(engine) -> str:
    with engine.begin() as conn:
        v = embed_key(conn)
        if not v:
            v = secrets.token_hex(16)
            conn.execute(insert(meta).values(key=EMBED_KEY, value=v))
        return v


def audit_tail(engine, n: int = 100) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(n))
        return [dict(r._mapping) for r in rows]
