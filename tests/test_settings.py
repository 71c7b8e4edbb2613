"""Where a setting comes from: command-line flags over the environment over the --config file over the
defaults, as every help text says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scorer.settings import Settings, SettingsError, anomaly_field


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    names = ("PORT", "REGISTRY_URI", "MODEL_DIR", "CHALLENGER_MODEL_DIR")
    for name in ("MLFLOW_TRACKING_URI", *(f"OCSF_ANOMALY_{n}" for n in names)):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (False, False, False, 8080),
        (True, False, False, 1111),
        (True, True, False, 2222),
        (False, True, False, 2222),
        (True, True, True, 3333),
        (True, False, True, 3333),
    ],
    ids=["default", "file", "env-over-file", "env", "flag-over-env-and-file", "flag-over-file"],
)
def test_flags_over_environment_over_file_over_defaults(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, in_file: bool, in_env: bool, flag: bool, expected: int
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("port = 1111\n" if in_file else "", encoding="utf-8")
    if in_env:
        clean_env.setenv("OCSF_ANOMALY_PORT", "2222")
    settings = Settings.load(config, port=3333 if flag else None)
    assert settings.port == expected


def test_an_aliased_setting_follows_the_same_order(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('registry_uri = "sqlite:///from-file.db"\n', encoding="utf-8")
    assert Settings.load(config).registry_uri == "sqlite:///from-file.db"
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://from-mlflow-env")
    assert Settings.load(config).registry_uri == "http://from-mlflow-env"
    clean_env.setenv("OCSF_ANOMALY_REGISTRY_URI", "http://from-our-env")
    assert Settings.load(config).registry_uri == "http://from-our-env"
    assert Settings.load(config, registry_uri="http://from-a-flag").registry_uri == "http://from-a-flag"


def test_the_layers_are_validated_together(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A challenger directory in the environment is completed by a champion directory from the file
    or a flag (``serve --model``), not refused for the environment alone."""
    clean_env.setenv("OCSF_ANOMALY_CHALLENGER_MODEL_DIR", str(tmp_path / "b"))
    config = tmp_path / "settings.toml"
    config.write_text(f'model_dir = "{tmp_path / "a"}"\n', encoding="utf-8")
    assert Settings.load(config).challenger_model_dir == tmp_path / "b"
    assert Settings.load(None, model_dir=tmp_path / "a").model_dir == tmp_path / "a"
    with pytest.raises(SettingsError, match="challenger_model_dir needs model_dir"):
        Settings.load(None)


def test_serving_processes_are_bounded_by_the_cores(clean_env: pytest.MonkeyPatch) -> None:
    """`serve --workers 100000` ran out of file descriptors and blamed the port ("another service on
    that port?")."""
    most = 4 * (os.cpu_count() or 1)
    assert Settings.load(None, workers=most).workers == most
    with pytest.raises(
        SettingsError, match=rf"workers \({most + 1:,}\) on {os.cpu_count()} cores: at most {most}"
    ):
        Settings.load(None, workers=most + 1)


def test_a_poll_interval_is_off_or_one_the_registry_can_take(clean_env: pytest.MonkeyPatch) -> None:
    """1e-9 was taken: the service asked the registry as fast as it could answer."""
    with pytest.raises(
        SettingsError, match=r"model_poll_seconds \(1e-09\) is 0 \(no polling\) or at least 0.1"
    ):
        Settings.load(None, model_poll_seconds=1e-9)
    assert Settings.load(None, model_poll_seconds=0).model_poll_seconds == 0
    assert Settings.load(None, model_poll_seconds=0.1).model_poll_seconds == 0.1


@pytest.mark.parametrize("name", ["_raw", "message"])
def test_an_anomaly_field_named_where_non_events_are_kept_is_refused(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    """/v1/enrich keeps what is not an event under _raw, the Vector hop under message, each beside
    its anomaly object: an anomaly field of that name dropped the item, and the Vector hop's
    "never dropped" with it."""
    with pytest.raises(SettingsError, match=f"anomaly_field.*'{name}' is where what is not an event is kept"):
        Settings.load(None, anomaly_field=name)
    assert Settings.load(None, anomaly_field="ml_verdict").anomaly_field == "ml_verdict"


@pytest.mark.parametrize("name", ["time", "class_uid", "metadata"])
def test_an_anomaly_field_that_would_replace_what_scoring_reads_is_refused(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    """A verdict named time replaced the event's time: report then had no day for it, and score-spark's
    summary failed after the whole job (the diff review); class_uid and metadata likewise."""
    with pytest.raises(SettingsError, match=f"anomaly_field.*'{name}' is a field of the event the verdict"):
        Settings.load(None, anomaly_field=name)
    clean_env.setenv("OCSF_ANOMALY_ANOMALY_FIELD", name)
    with pytest.raises(SettingsError, match=f"OCSF_ANOMALY_ANOMALY_FIELD: '{name}' is a field"):
        anomaly_field()


@pytest.mark.parametrize("seconds", ["inf", "1e12"])
def test_a_vector_dedupe_window_redis_cannot_hold_is_refused(
    clean_env: pytest.MonkeyPatch, seconds: str
) -> None:
    """An infinite window is no expiry Redis can be given: the serving processes then stopped sharing
    the batches they had forwarded, and only a DEBUG line said so. A day is the most taken."""
    with pytest.raises(SettingsError, match="vector_dedupe_seconds"):
        Settings.load(None, vector_dedupe_seconds=seconds)
    assert Settings.load(None, vector_dedupe_seconds=86_400).vector_dedupe_seconds == 86_400


def test_a_variable_set_empty_is_unset(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty OCSF_ANOMALY_REGISTRY_URI (compose's `${VAR:-}`) hid MLFLOW_TRACKING_URI, and MLflow
    took the empty URI for its default: a new, empty store in the working directory. Set empty, a
    variable is unset, as MLflow has it; an empty registry_uri given in the file or a flag is refused."""
    from scorer.paths import default_registry_uri

    clean_env.setenv("OCSF_ANOMALY_REGISTRY_URI", "")
    assert Settings.load(None).registry_uri == default_registry_uri()
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert Settings.load(None).registry_uri == "http://mlflow:5000"
    clean_env.setenv("OCSF_ANOMALY_PORT", "")
    assert Settings.load(None).port == 8080
    config = tmp_path / "settings.toml"
    config.write_text('registry_uri = " "\n', encoding="utf-8")
    clean_env.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(
        SettingsError, match=r"registry_uri: .*empty: leave registry_uri unset for the local store"
    ):
        Settings.load(config)
    with pytest.raises(SettingsError, match=r"registry_uri: .*empty"):
        Settings.load(None, registry_uri="")


@pytest.mark.parametrize("value", ["inf", "1e309", "-inf", "nan"])
def test_a_number_setting_must_be_finite(clean_env: pytest.MonkeyPatch, value: str) -> None:
    """OCSF_ANOMALY_MODEL_POLL_SECONDS=inf (or 1e309) passed `ge=0`: `config show` printed Infinity,
    which no JSON reader takes, and /v1/models answered `"poll_seconds": null` against its schema."""
    clean_env.setenv("OCSF_ANOMALY_MODEL_POLL_SECONDS", value)
    with pytest.raises(SettingsError, match="model_poll_seconds: Input should be a finite number"):
        Settings.load(None)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        # redis-py takes a database that is no number for database 0, silently
        (
            "OCSF_ANOMALY_REDIS_URL",
            "redis://cache:6379/abc",
            "redis_url: redis://cache:6379/abc: the database 'abc' is not a number",
        ),
        (
            "OCSF_ANOMALY_REDIS_URL",
            "cache:6379",
            "redis_url: cache:6379: Redis URL must specify one of the following schemes",
        ),
        (
            "OCSF_ANOMALY_ALERTS_URL",
            "ftp://am:9093",
            "alerts_url: should be an http:// or https:// URL without spaces",
        ),
        ("OCSF_ANOMALY_API_TOKEN", "two words", "api_token: should be printable ASCII without spaces"),
    ],
)
def test_a_setting_that_cannot_work_says_what_it_should_be_in_words(
    clean_env: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    """Not pydantic's regular expression ("should match pattern '^https?://[^\\s]+$'") nor its "Value error, "."""
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        Settings.load(None)
    assert says in str(refused.value)
    assert "pattern" not in str(refused.value)
    assert "Value error" not in str(refused.value)


def test_every_secret_and_every_url_of_the_settings_is_masked_for_display(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """What `config show` (and the logs) print: a secret only as set, a URL without its user and
    password. The names are read from the settings themselves, so that a setting added later is held
    to it too; the Kafka password and the stream's Redis URL left the lists without a test failing
    (the mutation review)."""
    from scorer.settings import RECEIVERS, SECRETS, URLS, masked

    fields = set(Settings.model_fields)
    secrets = {name for name in fields if name.endswith(("_token", "_password", "_secret"))}
    urls = {name for name in fields if name.endswith(("_url", "_uri"))}
    assert {"api_token", "kafka_password"} <= secrets <= SECRETS
    assert {"redis_url", "stream_redis_url"} <= urls <= URLS | RECEIVERS
    for name in secrets:
        clean_env.setenv(f"OCSF_ANOMALY_{name.upper()}", f"s3cret-{name}")
    for name in ("redis_url", "stream_redis_url"):
        clean_env.setenv(f"OCSF_ANOMALY_{name.upper()}", f"redis://user:pw-{name}@127.0.0.1:6379/0")
    shown = masked(Settings.load(None))
    assert {name: shown[name] for name in secrets} == dict.fromkeys(secrets, "***")
    assert "s3cret" not in repr(shown)
    assert "pw-" not in repr(shown)
