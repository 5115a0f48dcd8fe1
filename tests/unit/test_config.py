"""Settings from the environment: each value read as its field's type, or refused by name."""

from __future__ import annotations

from dataclasses import fields

import pytest

from app.config import Settings, SettingsError


def test_no_variables_leave_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_empty_values_leave_the_defaults() -> None:
    assert Settings.from_env({"WORKER_CONCURRENCY": "", "AUTH_DISABLED": ""}) == Settings()


def test_values_are_read_as_their_fields_types() -> None:
    settings = Settings.from_env(
        {
            "QUEUE_NAME": "jobs",
            "WORKER_CONCURRENCY": "8",
            "SCHEDULER_INTERVAL_SECONDS": "0.25",
            "SIMULATED_LATENCY": "0",
            "AUTH_DISABLED": "1",
            "METRICS_PORT": "9100",
        }
    )
    assert settings.queue_name == "jobs"
    assert settings.worker_concurrency == 8
    assert settings.scheduler_interval_seconds == 0.25
    assert settings.simulated_latency == 0.0
    assert settings.auth_disabled is True
    assert settings.metrics_port == 9100


def test_overrides_win_over_the_environment() -> None:
    assert Settings.from_env({"QUEUE_NAME": "jobs"}, queue_name="other").queue_name == "other"


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "Yes", "on", " on "])
def test_true_words(word: str) -> None:
    assert Settings.from_env({"AUTH_DISABLED": word}).auth_disabled is True


@pytest.mark.parametrize("word", ["0", "false", "False", "NO", "off"])
def test_false_words(word: str) -> None:
    assert Settings.from_env({"AUTH_DISABLED": word}).auth_disabled is False


@pytest.mark.parametrize("word", ["maybe", "2", "enabled", "y", "t"])
def test_any_other_word_is_refused_naming_the_variable_and_the_value(word: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"AUTH_DISABLED": word})
    assert str(info.value).startswith(f"AUTH_DISABLED={word!r} is not a boolean")


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("WORKER_CONCURRENCY", "x", "WORKER_CONCURRENCY='x' is not an integer"),
        ("MAX_NODES", "1.5", "MAX_NODES='1.5' is not an integer"),
        ("SCHEDULER_INTERVAL_SECONDS", "soon", "SCHEDULER_INTERVAL_SECONDS='soon' is not a number"),
        ("CIRCUIT_COOLDOWN_SECONDS", "inf", "CIRCUIT_COOLDOWN_SECONDS='inf' is not a finite number"),
        ("SIMULATED_LATENCY", "nan", "SIMULATED_LATENCY='nan' is not a finite number"),
        ("RETENTION_DAYS", "-1", "RETENTION_DAYS='-1' must be 0 or more"),
        ("MAX_BODY_BYTES", "-1024", "MAX_BODY_BYTES='-1024' must be 0 or more"),
        ("SIMULATED_LATENCY", "-0.5", "SIMULATED_LATENCY='-0.5' must be 0 or more"),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY='0' must be more than 0"),
        ("JOB_MAX_NODES", "0", "JOB_MAX_NODES='0' must be more than 0"),
        ("DEFAULT_NODE_TIMEOUT_SECONDS", "0", "DEFAULT_NODE_TIMEOUT_SECONDS='0' must be more than 0"),
        ("MAX_NODE_TIMEOUT_SECONDS", "0", "MAX_NODE_TIMEOUT_SECONDS='0' must be more than 0"),
        ("SCHEDULER_INTERVAL_SECONDS", "0.0", "SCHEDULER_INTERVAL_SECONDS='0.0' must be more than 0"),
        ("WORKER_LOST_SECONDS", "0", "WORKER_LOST_SECONDS='0' must be more than 0"),
        ("WORKER_HEARTBEAT_SECONDS", "0", "WORKER_HEARTBEAT_SECONDS='0' must be more than 0"),
        ("METRICS_PORT", "65536", "METRICS_PORT='65536' must be at most 65535"),
    ],
)
def test_a_number_that_cannot_be_used_is_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert str(info.value) == message


def test_settings_errors_are_value_errors() -> None:
    # callers that caught int()'s ValueError still catch these
    with pytest.raises(ValueError, match="WORKER_CONCURRENCY"):
        Settings.from_env({"WORKER_CONCURRENCY": "many"})


@pytest.mark.parametrize(
    "name,value,field",
    [
        ("QUEUED_GRACE_SECONDS", "0", "queued_grace_seconds"),  # tests use 0: re-enqueue at once
        ("MAX_QUEUED_NODES", "0", "max_queued_nodes"),  # 0: never refuse
        ("METRICS_PORT", "0", "metrics_port"),  # 0: off
        ("WORKER_SLICE_MS", "0", "worker_slice_ms"),
        ("DB_POOL_SIZE", "0", "db_pool_size"),  # SQLAlchemy: no limit
        ("METRICS_PORT", "65535", "metrics_port"),
    ],
)
def test_zero_and_the_bounds_themselves_are_accepted_where_they_mean_something(
    name: str, value: str, field: str
) -> None:
    assert getattr(Settings.from_env({name: value}), field) == int(value)


def test_every_number_field_refuses_a_negative_value() -> None:
    numbers = [f.name for f in fields(Settings) if type(f.default) in (int, float)]
    assert len(numbers) > 20
    for name in numbers:
        with pytest.raises(SettingsError, match=f"^{name.upper()}="):
            Settings.from_env({name.upper(): "-1"})
