"""Settings.from_env: the environment the template sets, converted and checked once per container."""

from __future__ import annotations

import pytest

from ocelot_sms.settings import Settings, SettingsError, get_settings


def test_only_table_name_is_required_and_the_rest_has_defaults() -> None:
    # Given an environment with only TABLE_NAME
    # When read
    settings = Settings.from_env({"TABLE_NAME": "messages"})

    # Then every other value is the documented default
    assert settings == Settings(table_name="messages")
    assert (settings.ocelot_max_messages, settings.max_messages_per_request) == (100, 1000)
    assert settings.secret_max_age_seconds == 300
    assert settings.ocelot_base_url == "https://ai.ocelotbot.com"


def test_values_are_converted_to_each_field_type() -> None:
    # Given numbers and strings as the environment holds them (text)
    env = {
        "TABLE_NAME": "t",
        "IDEMPOTENCY_TABLE_NAME": "i",
        "OCELOT_BASE_URL": "http://127.0.0.1:8080",
        "DEFAULT_SENDER": "+15550000000",
        "OCELOT_MAX_MESSAGES": "25",
        "MAX_MESSAGES_PER_REQUEST": "250",
        "CONNECT_TIMEOUT_SECONDS": "1.5",
        "READ_TIMEOUT_SECONDS": "7",
        "MAX_SEND_ATTEMPTS": "2",
        "MAX_RETRY_WAIT_SECONDS": "0",
        "SAFETY_MARGIN_SECONDS": "0.25",
        "SECRET_MAX_AGE_SECONDS": "60",
    }

    # When read
    settings = Settings.from_env(env)

    # Then ints are ints, floats are floats and strings stay strings
    assert settings.ocelot_max_messages == 25
    assert isinstance(settings.ocelot_max_messages, int)
    assert settings.max_messages_per_request == 250
    assert settings.connect_timeout_seconds == 1.5
    assert settings.read_timeout_seconds == 7.0
    assert isinstance(settings.read_timeout_seconds, float)
    assert settings.max_send_attempts == 2
    assert settings.max_retry_wait_seconds == 0.0
    assert settings.safety_margin_seconds == 0.25
    assert settings.secret_max_age_seconds == 60
    assert (settings.idempotency_table_name, settings.ocelot_base_url, settings.default_sender) == (
        "i",
        "http://127.0.0.1:8080",
        "+15550000000",
    )


def test_an_empty_value_means_the_default() -> None:
    # Given parameters the template leaves empty (e.g. DefaultSender "")
    settings = Settings.from_env(
        {"TABLE_NAME": "t", "DEFAULT_SENDER": "", "OCELOT_MAX_MESSAGES": "", "MAX_SEND_ATTEMPTS": ""}
    )

    # Then they read as unset
    assert (settings.default_sender, settings.ocelot_max_messages, settings.max_send_attempts) == ("", 100, 4)


def test_unrelated_variables_are_ignored() -> None:
    # Given variables that are not settings; When read; Then they change nothing
    assert Settings.from_env({"TABLE_NAME": "t", "PATH": "/usr/bin", "TABLE": "x"}) == Settings(
        table_name="t"
    )


@pytest.mark.parametrize("env", [{}, {"TABLE_NAME": ""}])
def test_table_name_is_required(env: dict[str, str]) -> None:
    # Given no (or an empty) TABLE_NAME; When read; Then SettingsError
    with pytest.raises(SettingsError, match="TABLE_NAME is required"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("OCELOT_MAX_MESSAGES", "ten"),
        ("OCELOT_MAX_MESSAGES", "1.5"),
        ("READ_TIMEOUT_SECONDS", "fast"),
        ("SECRET_MAX_AGE_SECONDS", "5m"),
    ],
)
def test_a_value_that_is_not_a_number_is_refused_by_name(name: str, raw: str) -> None:
    # Given a numeric setting that does not parse
    env = {"TABLE_NAME": "t", name: raw}

    # When read; Then SettingsError names the variable and its value
    with pytest.raises(SettingsError, match=f"{name}='{raw}' is not a valid"):
        Settings.from_env(env)


def test_every_problem_is_reported_at_once() -> None:
    # Given two bad numbers and no table name
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"OCELOT_MAX_MESSAGES": "x", "MAX_RETRY_WAIT_SECONDS": "y"})

    # Then all three are in the one error
    text = str(caught.value)
    assert "OCELOT_MAX_MESSAGES='x'" in text
    assert "MAX_RETRY_WAIT_SECONDS='y'" in text
    assert "TABLE_NAME is required" in text


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("OCELOT_MAX_MESSAGES", "0", "OCELOT_MAX_MESSAGES"),
        ("OCELOT_MAX_MESSAGES", "10001", "OCELOT_MAX_MESSAGES"),
        ("MAX_MESSAGES_PER_REQUEST", "0", "MAX_MESSAGES_PER_REQUEST"),
        ("OCELOT_BASE_URL", "ftp://ocelot.test", "OCELOT_BASE_URL"),
        ("OCELOT_BASE_URL", "ai.ocelotbot.com", "OCELOT_BASE_URL"),
        ("SECRET_MAX_AGE_SECONDS", "301", "SECRET_MAX_AGE_SECONDS"),
        ("SECRET_MAX_AGE_SECONDS", "-1", "SECRET_MAX_AGE_SECONDS"),
        ("CONNECT_TIMEOUT_SECONDS", "0", "CONNECT_TIMEOUT_SECONDS"),
        ("READ_TIMEOUT_SECONDS", "nan", "READ_TIMEOUT_SECONDS"),
        ("MAX_SEND_ATTEMPTS", "0", "MAX_SEND_ATTEMPTS"),
        ("MAX_RETRY_WAIT_SECONDS", "-1", "MAX_RETRY_WAIT_SECONDS"),
        ("SAFETY_MARGIN_SECONDS", "-0.5", "SAFETY_MARGIN_SECONDS"),
    ],
)
def test_values_out_of_range_are_refused(name: str, raw: str, message: str) -> None:
    # Given a number outside its range; When read; Then SettingsError naming it
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"TABLE_NAME": "t", name: raw})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("OCELOT_MAX_MESSAGES", "1"),
        ("OCELOT_MAX_MESSAGES", "10000"),
        ("SECRET_MAX_AGE_SECONDS", "0"),
        ("SECRET_MAX_AGE_SECONDS", "300"),
        ("MAX_SEND_ATTEMPTS", "1"),
        ("MAX_RETRY_WAIT_SECONDS", "0"),
    ],
)
def test_range_limits_are_inclusive(name: str, raw: str) -> None:
    # Given a value at a range limit; When read; Then it is accepted as it is
    settings = Settings.from_env({"TABLE_NAME": "t", name: raw})
    assert str(getattr(settings, name.lower())) in (raw, f"{raw}.0")


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the process environment
    monkeypatch.setenv("TABLE_NAME", "from-os-environ")
    monkeypatch.setenv("OCELOT_MAX_MESSAGES", "7")

    # When read without a mapping; Then os.environ is used
    settings = Settings.from_env()
    assert (settings.table_name, settings.ocelot_max_messages) == ("from-os-environ", 7)


def test_get_settings_is_read_once_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings already read
    monkeypatch.setenv("TABLE_NAME", "first")
    get_settings.cache_clear()
    first = get_settings()

    # When the environment changes
    monkeypatch.setenv("TABLE_NAME", "second")

    # Then the cached object is returned until the cache is cleared
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().table_name == "second"
    get_settings.cache_clear()


def test_the_default_chunk_size_is_the_contracts() -> None:
    from ocelot_sms.contract import DEFAULT_MAX_MESSAGES_PER_REQUEST

    assert Settings(table_name="t").ocelot_max_messages == DEFAULT_MAX_MESSAGES_PER_REQUEST


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("QUIET_HOURS", "21:00", "must be a window HH:MM-HH:MM or empty"),
        ("QUIET_HOURS", "08:00-08:00", "starts where it ends"),
        ("QUIET_HOURS_TIME_ZONE", "Central Time", "must be an IANA time zone"),
        ("QUIET_HOURS_TIME_ZONE", "../etc/passwd", "must be an IANA time zone"),
    ],
)
def test_quiet_hours_must_be_a_window_in_a_time_zone(name: str, raw: str, says: str) -> None:
    # Given a window that is none, or a zone that is none; When read; Then SettingsError saying so
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"TABLE_NAME": "t", name: raw})


def test_quiet_hours_are_read_as_given() -> None:
    # Given / When a window and its zone; Then kept as given
    settings = Settings.from_env(
        {"TABLE_NAME": "t", "QUIET_HOURS": "21:00-08:00", "QUIET_HOURS_TIME_ZONE": "America/Chicago"}
    )
    assert (settings.quiet_hours, settings.quiet_hours_time_zone) == ("21:00-08:00", "America/Chicago")
