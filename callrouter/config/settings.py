"""Service settings: CALLROUTER_* environment variables over a TOML file over defaults."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from callrouter.config.errors import SettingsError, problem, toml_problem

log = logging.getLogger(__name__)

CONFIG_ENV = "CALLROUTER_CONFIG"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./callrouter.db"

# The file's tables for the one Settings being built; a context variable so that two
# concurrent load_settings() calls (tests, threads) never see each other's file.
_file_values: ContextVar[Mapping[str, Any]] = ContextVar(
    "callrouter_file_values", default=MappingProxyType({})
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    # repr=False: a PostgreSQL URL carries its password; log safe_url instead.
    url: str = Field(default=DEFAULT_DATABASE_URL, min_length=1, repr=False)
    # PostgreSQL only: connections of the FastAGI path's own pool (snapshot reads and
    # decision batches). A read takes well under a millisecond, so a few cover 1,500
    # calls/s; more only help when the database is slow to answer.
    pool_size: int = Field(default=10, ge=1, le=200)
    # PostgreSQL only: snapshot statements in flight at once. Reads asked while all are
    # taken wait and go together in the next one (cheaper for the database and the
    # daemon under load; a longer wait for the caller's history at the tail).
    snapshot_statements: int = Field(default=2, ge=1, le=200)
    # PostgreSQL only: keep what routing reads about callers (the last day or so of calls,
    # escalations, flags, opt-outs, tickets) in memory, kept current by the database's
    # change notifications (migration 0005), instead of a statement per call. Off: every
    # call reads the database. docs/routing-state.md.
    state_replica: bool = True

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ***, for logs and status pages."""
        return _mask_password(self.url)


class FastAgiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=4573, ge=0, le=65535)
    # A routing answer later than this is not worth waiting for: the call goes on unrouted.
    budget_ms: int = Field(default=500, ge=1, le=10_000)
    header_timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    max_sessions: int = Field(default=1000, ge=1)
    # The decision log is written in batches gathered for up to this long: a transaction
    # of ~100 decisions costs the database half what 5 cost, per decision (docs/performance.md).
    decision_linger_ms: int = Field(default=100, ge=0, le=5_000)


class AmiSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str = "callrouter"
    secret: SecretStr = SecretStr("")
    # The manager login's Events. call, agent and system are what the listener reads;
    # "dialplan" adds VarSet (the decision from the dialplan) at three times the volume.
    events: str = "call,agent,system"
    ping_interval: float = Field(default=5.0, gt=0, le=3600)
    # The operator directory (who owns which interface) is re-read this often while the
    # listener runs, and at most this often when an event names an interface nobody owns.
    directory_reload_seconds: float = Field(default=30.0, ge=1, le=86400)
    directory_miss_seconds: float = Field(default=5.0, ge=0.5, le=3600)
    server_id: str = "default"
    # Where call records wait (JSON lines) while the database is unreachable; unset: next
    # to the SQLite file, or ./callrouter-call-journal-<server_id>.jsonl with PostgreSQL.
    journal_path: Path | None = None

    @field_validator("events")
    @classmethod
    def _event_classes(cls, value: str) -> str:
        if not re.fullmatch(r"on|off|[a-z]+(,[a-z]+)*", value):
            raise ValueError("expected on, off or event classes such as call,agent,system")
        return value

    @field_validator("server_id")
    @classmethod
    def _server_name(cls, value: str) -> str:
        # Tags events and rows: kept to characters that need no quoting anywhere.
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("expected letters, digits, '-', '_' or '.' (at most 64)")
        return value

    @model_validator(mode="after")
    def _login_when_enabled(self) -> AmiSettings:
        if self.enabled and not (self.username and self.secret.get_secret_value()):
            raise ValueError("ami.username and ami.secret are required when ami.enabled is true")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class NumbersSettings(_Section):
    # RU: the call centres this was written for dial 8 912 ... and +7 912 ...; both must
    # normalise to one E.164 caller. Set your own country's region code.
    default_region: str = "RU"
    # Numbers never matched to anyone's history (switchboards, a reseller's trunk).
    shared_numbers: list[str] = Field(default_factory=list)

    @field_validator("default_region", mode="before")
    @classmethod
    def _known_region(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in phonenumbers.SUPPORTED_REGIONS:
            return value.upper()
        raise ValueError("expected a two-letter region code known to phonenumbers, e.g. RU, US")


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Everything the service needs except the routing rules (the file's [rules] table)."""

    model_config = SettingsConfigDict(
        env_prefix="CALLROUTER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    ami: AmiSettings = AmiSettings()
    api: ApiSettings = ApiSettings()
    numbers: NumbersSettings = NumbersSettings()
    log_level: LogLevel = "INFO"
    # The TOML file these settings (and the rules) came from; None when there was none.
    config_file: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments, then the environment, then the file, then the defaults.
        file_source = InitSettingsSource(settings_cls, init_kwargs=dict(_file_values.get()))
        return init_settings, env_settings, file_source


def config_path(path: Path | None = None) -> Path | None:
    """The settings file: the explicit path, else $CALLROUTER_CONFIG, else none."""
    if path is not None:
        return path
    from_env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(from_env) if from_env else None


def load_settings(path: Path | None = None) -> Settings:
    """Settings from the environment over the file (``path`` or $CALLROUTER_CONFIG).

    A missing file is not an error (the defaults and the environment are enough to run),
    but it is logged. A file that is not TOML, or any invalid value, is a SettingsError with
    one line per problem.
    """
    source = config_path(path)
    values: dict[str, Any] = {}
    if source is not None:
        values = _read_file(source)
    with _file_layer(values):
        try:
            return Settings(config_file=source if values or _exists(source) else None)
        except ValidationError as exc:
            raise SettingsError(_problems(exc), source=source) from None


def _read_file(source: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.warning("Config file %s not found; using the defaults and CALLROUTER_*", source)
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([toml_problem(exc, source)], source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{source}: cannot be read: {exc}"], source=source) from None
    document.pop("rules", None)  # the routing rules: rules_file.py reads them
    return document


def _exists(source: Path | None) -> bool:
    return source is not None and source.is_file()


@contextmanager
def _file_layer(values: Mapping[str, Any]) -> Iterator[None]:
    token = _file_values.set(values)
    try:
        yield
    finally:
        _file_values.reset(token)


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        where = [part for part in error["loc"] if isinstance(part, str | int)]
        value = "**********" if where and where[-1] == "secret" else _redact(error["input"])
        lines.append(problem(where, value, message[:1].lower() + message[1:]))
    return lines


def _redact(value: Any) -> Any:
    """A refused value as shown in an error, with secrets (and DB passwords) masked."""
    if isinstance(value, Mapping):
        return {k: "**********" if k == "secret" else _redact(v) for k, v in value.items()}
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, str):
        return _mask_password(value)
    return value


def _mask_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
