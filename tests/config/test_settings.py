"""Settings: defaults, the TOML file, CALLROUTER_* over the file, secrets kept out of sight."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from callrouter.config import Settings, SettingsError, config_path, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callrouter.toml"
    path.write_text(text)
    return path


def test_defaults_with_no_file_at_all() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.database.url == "sqlite+aiosqlite:///./callrouter.db"
    assert (settings.fastagi.host, settings.fastagi.port) == ("127.0.0.1", 4573)
    assert (settings.fastagi.budget_ms, settings.fastagi.header_timeout_ms) == (500, 2000)
    assert settings.fastagi.max_sessions == 1000
    assert not settings.ami.enabled
    assert (settings.ami.port, settings.ami.server_id) == (5038, "default")
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8000)
    assert settings.numbers.default_region == "RU"
    assert settings.log_level == "INFO"
    assert settings.config_file is None


def test_a_missing_file_is_fine_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = load_settings(tmp_path / "absent.toml")
    assert settings == Settings()
    assert "absent.toml not found" in caplog.text


def test_the_file_sets_values_and_its_rules_are_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        log_level = "debug"
        [fastagi]
        port = 4600
        [numbers]
        default_region = "us"
        [rules.defaults]
        ring_seconds = 10
        """,
    )
    settings = load_settings(path)
    assert settings.fastagi.port == 4600
    assert settings.fastagi.host == "127.0.0.1"
    assert settings.numbers.default_region == "US"
    assert settings.log_level == "DEBUG"
    assert settings.config_file == path


def test_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[ami]\nhost = "pbx"\nport = 5039\nsecret = "from-file"\n')
    monkeypatch.setenv("CALLROUTER_CONFIG", str(path))
    monkeypatch.setenv("CALLROUTER_AMI__SECRET", "from-env")
    monkeypatch.setenv("CALLROUTER_AMI__PORT", "6000")
    monkeypatch.setenv("CALLROUTER_LOG_LEVEL", "warning")
    settings = load_settings()
    assert settings.config_file == path
    assert settings.ami.host == "pbx"  # the file's, merged with the environment's keys
    assert settings.ami.port == 6000
    assert settings.ami.secret.get_secret_value() == "from-env"
    assert settings.log_level == "WARNING"


def test_an_explicit_path_wins_over_callrouter_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLROUTER_CONFIG", str(tmp_path / "other.toml"))
    assert config_path(tmp_path / "mine.toml") == tmp_path / "mine.toml"
    assert config_path() == tmp_path / "other.toml"


def test_secrets_stay_out_of_repr_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[ami]\nsecret = "s3cret"\n[database]\nurl = "postgresql+asyncpg://cr:hunter2@db/cr"\n',
    )
    settings = load_settings(path)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert "hunter2" not in repr(settings)
    assert settings.database.safe_url == "postgresql+asyncpg://cr:***@db/cr"
    assert settings.ami.secret.get_secret_value() == "s3cret"
    monkeypatch.setenv("CALLROUTER_AMI__ENABLED", "true")
    monkeypatch.setenv("CALLROUTER_AMI__USERNAME", "")
    with pytest.raises(SettingsError) as refused:
        load_settings(path)
    assert "secret = '**********'" in str(refused.value)
    assert "s3cret" not in str(refused.value)
    assert "ami.username and ami.secret are required when ami.enabled is true" in str(refused.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[fastagi]\nport = 70000",
            "fastagi.port = 70000: input should be less than or equal to 65535",
        ),
        ("[fastagi]\nprot = 1", "fastagi.prot = 1: unknown key"),
        (
            "[numbers]\ndefault_region = 'XX'",
            "numbers.default_region = 'XX': expected a "
            "two-letter region code known to phonenumbers, e.g. RU, US",
        ),
        (
            "log_level = 'LOUD'",
            "log_level = 'LOUD': input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
        ),
        (
            "[ami]\nevents = 'call, agent'",
            "ami.events = 'call, agent': expected on, off "
            "or event classes such as call,agent,system",
        ),
        (
            "[ami]\nserver_id = 'pbx 1'",
            "ami.server_id = 'pbx 1': expected letters, digits, '-', '_' or '.' (at most 64)",
        ),
    ],
)
def test_bad_settings_get_one_line_each(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(write(tmp_path, text))
    assert refused.value.problems == (expected,)


def test_a_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLROUTER_API__PORT", "eighty")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert refused.value.problems == (
        "api.port = 'eighty': input should be a valid integer, "
        "unable to parse string as an integer",
    )


def test_toml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[api]\nport = \n")
    with pytest.raises(SettingsError) as refused:
        load_settings(path)
    assert refused.value.problems == (f"{path}: invalid TOML at line 2, column 8: Invalid value",)
