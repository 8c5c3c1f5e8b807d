"""Settings read from the environment (prefix ``PANORAMA_``), in one place."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = PROJECT_ROOT / "data"


class Settings(BaseSettings):
    """Every knob of City Panorama; change by environment variable, never by code."""

    model_config = SettingsConfigDict(env_prefix="PANORAMA_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "var", description="Where the embedded store lives.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite file in data_dir.")
    read_database_url: str = Field(default="", description="URL the screens read from (a read-only role, "
                                   "a read replica); empty = database_url. Always opened read-only.")
    cache_url: str = Field(default="simple://", description="simple://, filesystem:///path, "
                           "redis://[user]:password@host:port/db or rediss://… (TLS); data only, never pickled")
    refresh_seconds: int = Field(default=5, ge=1, le=3600)
    city: str = Field(default="beijing", description="A city folder under data/, or a path to one.")
    aqi_standard: Literal["cn", "us"] = "cn"
    seed: int = 42
    background_refresh: bool = Field(default=True, description="Recompute what screens ask for as each "
                                     "refresh bucket starts, so their requests are cache hits.")
    alert_tick_seconds: int = Field(default=-1, ge=-1, le=3600, description="Seconds between alert evaluations "
                                    "(once per tick for the whole deployment); -1 = the refresh interval, 0 = off: "
                                    "this app evaluates no alerts.")
    ngsi_token: str = Field(default="", description="Bearer token of POST /ngsi-ld/notify; empty = disabled.")
    write_wait_seconds: float = Field(default=10.0, ge=0.1, le=60, description="How long POST /ngsi-ld/notify "
                                      "waits for a store busy with another writer before answering 503 with "
                                      "Retry-After (nothing of that notification stored: the sender sends it again).")
    ngsi_max_body: int = Field(default=1_000_000, ge=1_024, description="Largest body (bytes) POST /ngsi-ld/notify "
                               "takes; a larger one is refused (413).")
    ngsi_allow_outside: bool = Field(default=False, description="Keep NGSI entities (notify, MQTT) located "
                                     "outside every district, as assets without a district; default: reject them.")
    mqtt_max_payload: int = Field(default=1_000_000, ge=1_024, description="Largest MQTT message (bytes) "
                                  "stored; a larger one is rejected (its first few KB kept with the reason).")
    frame_ancestors: str = Field(default="'self'", description="Origins allowed to frame /embed/* panels "
                                 "(CSP frame-ancestors), space- or comma-separated; default: this app only.")

    anonymous: Literal["viewer", "off"] = Field(default="off", description="What a browser that has not signed "
                                                "in may do: `viewer` reads every screen (the embedded default, "
                                                "`panorama run`), `off` sends it to the login page (production).")
    secret_key: SecretStr = Field(default=SecretStr(""), description="Signs sessions, CSRF tokens and embed URLs; "
                                  "required by `serve` (at least 32 characters); `panorama run` keeps one in "
                                  "data_dir. Changing it signs everyone out and revokes every signed embed.")
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="A sign-in lasts this long.")
    login_rate_limit: str = Field(default="5 per minute; 30 per hour", description="Sign-in attempts per "
                                  "client address and per user name (Flask-Limiter syntax).")
    api_rate_limit: str = Field(default="1200 per minute", description="Requests to /api/* and the callbacks "
                                "per client address (Flask-Limiter syntax); a wall sends ~12 a minute.")
    proxy_hops: int = Field(default=0, ge=0, le=5, description="Reverse proxies in front of the app whose "
                            "X-Forwarded-For/-Proto are trusted (client address for rate limits, HTTPS for "
                            "Secure cookies).")

    notify_deliver: bool = Field(default=True, description="Send alert notifications from this process (a "
                                 "background thread of the app and of `panorama run`); off when a separate "
                                 "`panorama notify run` sends them.")
    notify_poll_seconds: float = Field(default=0.5, gt=0, le=60, description="How often the deliverer looks for "
                                       "notifications queued by other processes (it is woken at once by its own).")
    notify_timeout_seconds: float = Field(default=5.0, gt=0, le=120, description="Longest wait for a webhook "
                                          "receiver or the SMTP server, per attempt.")
    notify_max_attempts: int = Field(default=10, ge=1, le=100, description="Attempts before a notification is "
                                     "marked failed (`panorama notify list --failed`, `notify retry ID`).")
    notify_backoff_seconds: float = Field(default=2.0, gt=0, le=3600, description="Wait before the first retry; "
                                          "doubled each time (with jitter), up to notify_backoff_max_seconds.")
    notify_backoff_max_seconds: float = Field(default=300.0, gt=0, le=86_400, description="Longest wait between "
                                              "two attempts.")
    smtp_host: str = Field(default="", description="SMTP server of e-mail channels; empty = e-mail cannot be sent.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_tls: Literal["starttls", "ssl", "off"] = Field(default="starttls", description="`starttls` (port 587), "
                                                        "`ssl` (implicit TLS, port 465) or `off` (a local relay).")
    smtp_user: str = Field(default="", description="SMTP login; empty = no login.")
    smtp_password: SecretStr = Field(default=SecretStr(""))

    @field_validator("aqi_standard", mode="before")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower() if isinstance(v, str) else v

    @field_validator("frame_ancestors")
    @classmethod
    def _origins(cls, v: str) -> str:
        """Refuse a value that is not a list of origins when the settings are read (at start-up)."""
        from dashboard.security import parse_origins

        parse_origins(v)
        return v

    @field_validator("login_rate_limit", "api_rate_limit")
    @classmethod
    def _limits(cls, v: str) -> str:
        """Refuse a rate limit Flask-Limiter cannot read, when the settings are read (at start-up)."""
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError:
            raise ValueError(f"not a rate limit: {v[:80]!r} (e.g. '5 per minute; 30 per hour')") from None
        return v

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'panorama.sqlite').resolve()}"

    @property
    def resolved_read_database_url(self) -> str:
        """Return the URL the dashboard reads from: the read URL, else the store's."""
        return self.read_database_url or self.resolved_database_url

    @property
    def city_dir(self) -> Path:
        """Return the folder that describes the configured city."""
        p = Path(self.city)
        if p.is_dir():
            return p.resolve()
        if p.suffix in {".toml"} and p.is_file():
            return p.resolve().parent
        return DATA_ROOT / self.city


def get_settings(**overrides) -> Settings:
    """Read settings from the environment, with keyword overrides on top."""
    return Settings(**overrides)


def settings_problem(exc) -> str:
    """Return a pydantic ValidationError of the settings as one line naming the environment variables."""
    parts = []
    for err in exc.errors():
        name = "PANORAMA_" + "_".join(str(x) for x in err.get("loc", ())).upper()
        parts.append(f"{name}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
    return "; ".join(parts) or str(exc).splitlines()[0]
