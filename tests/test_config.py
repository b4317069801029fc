"""models.yaml parsing: the shipped file is valid; every kind of typo names file, line, model and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.backends import check_models
from studio.config import DEFAULT_MODELS_FILE, TABS, ConfigError, Settings, load_config
from tests.conftest import write_models


def check(tmp_path: Path, body: str) -> None:
    config = load_config(write_models(tmp_path, body))
    check_models(config)


def test_shipped_models_file_is_valid_and_covers_every_tab() -> None:
    config = load_config(DEFAULT_MODELS_FILE)
    check_models(config)
    for tab in TABS:
        assert config.for_tab(tab), f"no model for the {tab} tab in models.yaml"
    bundled = [m for m in config.models if m.source.startswith("pip:")]
    assert {m.id for m in bundled} >= {"smollm2-135m"}
    assert all(m.sha256 for m in bundled), "bundled files must carry a sha256"
    hub = [m for m in config.models if "/" in m.source and not m.source.startswith("pip:")]
    # Every generating tab (scorers and safety checkers from the Hub may come on top).
    assert {t for m in hub for t in m.tabs} >= set(TABS), "hub models for GPU users on every tab"


GOOD = """models:
  - id: a
    tabs: [chat]
    backend: transformers-chat
    source: org/model
"""


def test_unknown_field_names_line_model_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        check(tmp_path, GOOD + "    temprature: 0.5\n")
    msg = str(err.value)
    assert "line 6" in msg and "model 'a'" in msg and "'temprature'" in msg and "unknown field" in msg


def test_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        check(tmp_path, GOOD.replace("transformers-chat", "transfomers-chat"))
    msg = str(err.value)
    assert "model 'a'" in msg and "'backend'" in msg and "transformers-chat" in msg and "line 4" in msg


def test_tab_the_backend_cannot_serve(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 3: model 'a'.*'tabs'.*cannot serve image"):
        check(tmp_path, GOOD.replace("[chat]", "[chat, image]"))


def test_unknown_tab_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 3: model 'a': field 'tabs.0'"):
        check(tmp_path, GOOD.replace("[chat]", "[chats]"))


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ("{temperature: 5}", r"temperature=5.*valid: in \(0.0, 2.0\]"),
        ("{max_new_tokens: 0}", r"max_new_tokens=0.*valid: in \[1, 4096\]"),
        ("{temperature: .nan}", r"temperature=nan: must be a finite number"),
        ("{temprature: 0.5}", r"unknown parameter 'temprature'"),
    ],
)
def test_invalid_defaults_are_refused_at_start_up(tmp_path: Path, defaults: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"line 6: model 'a': field 'defaults': " + expected):
        check(tmp_path, GOOD + f"    defaults: {defaults}\n")


def test_duplicate_ids_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice"):
        check(tmp_path, GOOD + GOOD.removeprefix("models:\n"))
    with pytest.raises(ConfigError, match=r"model 'a': field 'device'"):
        check(tmp_path, GOOD + "    device: tpu\n")
    with pytest.raises(ConfigError, match=r"field 'sha256'"):
        check(tmp_path, GOOD + "    sha256: nothex\n")


def test_not_yaml_and_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        check(tmp_path, "models: [\n")
    with pytest.raises(ConfigError, match="'models:' list"):
        check(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_studio_refuses_to_start_on_an_invalid_file(make_studio) -> None:
    with pytest.raises(ConfigError, match="defaults"):
        make_studio(GOOD + "    defaults: {top_p: 2}\n")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "m.yaml"))
    monkeypatch.delenv("STUDIO_DATABASE_URL", raising=False)
    monkeypatch.delenv("STUDIO_MODEL_CACHE", raising=False)
    s = Settings.from_env()
    assert s.data_dir == tmp_path / "d" and s.models_file == tmp_path / "m.yaml"
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'studio.db'}"
    assert s.model_cache == tmp_path / "d" / "models"
    monkeypatch.setenv("STUDIO_DATABASE_URL", "postgresql://u@localhost/studio")
    assert Settings.from_env(models_file="x.yaml").database_url.startswith("postgresql://")
    assert Settings.from_env(models_file="x.yaml").models_file == Path("x.yaml")


def test_backend_options_are_checked_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 6: model 'a': field 'options': compile: Extra inputs"):
        check(tmp_path, GOOD + "    options: {compile: true}\n")


# -- the STUDIO_* environment: every variable is a typed Settings field, checked at start-up -------------

ENV_VARS = (
    "STUDIO_PORT",
    "STUDIO_USERS_FILE",
    "STUDIO_JOBS_PER_DEVICE",
    "STUDIO_MEMORY_BUDGET",
    "STUDIO_RATE_LIMIT",
    "STUDIO_ALLOWED_ORIGINS",
    "STUDIO_ALLOWED_HOSTS",
    "STUDIO_TRUSTED_PROXIES",
    "STUDIO_SESSION_IDLE",
    "STUDIO_SESSION_MAX",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unset_or_empty_variables_keep_the_defaults(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings.from_env(data_dir=tmp_path)
    assert (s.port, s.users_file, s.jobs_per_device, s.memory_budget) == (7860, None, None, None)
    assert (s.rate_limit, s.allowed_origins) == (None, frozenset())
    assert (s.allowed_hosts, s.trusted_proxies, s.session_idle, s.session_max) == (
        frozenset(),
        (),
        12 * 3600,
        7 * 86400,
    )
    for name in ENV_VARS:
        clean_env.setenv(name, "  ")
    assert Settings.from_env(data_dir=tmp_path) == s


def test_studio_port_sets_the_default_port_of_serve(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio import cli
    from tests.conftest import FAKE_MODELS

    ports: list[int] = []

    def fake_serve(studio: object, args: object) -> int:
        ports.append(args.port)  # type: ignore[attr-defined]
        return 0

    clean_env.setattr(cli, "_serve", fake_serve)
    argv = ["serve", "--models", str(write_models(tmp_path, FAKE_MODELS)), "--data-dir", str(tmp_path / "d")]
    assert cli.main(argv) == 0
    clean_env.setenv("STUDIO_PORT", "8123")
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--port", "9000"]) == 0  # the flag wins
    assert ports == [7860, 8123, 9000]


def test_studio_users_file_names_the_accounts_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from studio.security.accounts import users_file

    assert users_file(Settings.from_env(data_dir=tmp_path)) == tmp_path / "users.json"
    clean_env.setenv("STUDIO_USERS_FILE", str(tmp_path / "team" / "accounts.json"))
    settings = Settings.from_env(data_dir=tmp_path)
    assert settings.users_file == tmp_path / "team" / "accounts.json"
    assert users_file(settings) == tmp_path / "team" / "accounts.json"
    assert users_file(settings, tmp_path / "flag.json") == tmp_path / "flag.json"  # --auth FILE / --file win
    clean_env.setenv("HOME", str(tmp_path))
    clean_env.setenv("STUDIO_USERS_FILE", "~/u.json")
    assert users_file(Settings.from_env(data_dir=tmp_path)) == tmp_path / "u.json"


def test_studio_jobs_per_device_and_memory_budget_reach_the_manager(
    clean_env: pytest.MonkeyPatch, make_studio
) -> None:
    from studio.config import GB, MB
    from studio.manager import ModelManager

    manager = make_studio().manager
    assert manager.jobs_per_device == 1 and manager.configured_budget("cpu") is None
    clean_env.setenv("STUDIO_JOBS_PER_DEVICE", "3")
    clean_env.setenv("STUDIO_MEMORY_BUDGET", "cpu=900MB,cuda=2GB")
    manager = make_studio().manager
    assert manager.jobs_per_device == 3
    assert manager.budget("cpu") == 900 * MB and manager.budget("cuda") == 2 * GB
    clean_env.setenv("STUDIO_MEMORY_BUDGET", "1.5GB")
    assert make_studio().manager.budget("cuda") == int(1.5 * GB)
    # Settings handed in directly are used as they are, without reading the environment again.
    studio = make_studio()
    given = Settings(
        studio.settings.data_dir,
        studio.settings.models_file,
        studio.settings.database_url,
        studio.settings.model_cache,
        jobs_per_device=5,
        memory_budget={"cpu": 3 * GB},
    )
    clean_env.setenv("STUDIO_JOBS_PER_DEVICE", "oops")
    manager = ModelManager(studio.config, lambda spec: None, settings=given)  # type: ignore[arg-type,return-value]
    assert manager.jobs_per_device == 5 and manager.budget("cpu") == 3 * GB
    assert manager.configured_budget("cuda") is None


def test_studio_rate_limit_and_allowed_origins_reach_the_guard(
    clean_env: pytest.MonkeyPatch, make_studio
) -> None:
    from studio.security.guard import DEFAULT_RATE, Guard, policy_for

    studio = make_studio()
    assert policy_for(studio, auth=False).rate is None  # one local user: off
    default = policy_for(studio, auth=True).rate
    assert default is not None and default.rate == DEFAULT_RATE / 60
    assert policy_for(studio, auth=True).origins == set()

    clean_env.setenv("STUDIO_RATE_LIMIT", "30")
    clean_env.setenv(
        "STUDIO_ALLOWED_ORIGINS", "https://example.com, http://10.0.0.7:7860/app,,studio.lan:8080"
    )
    policy = policy_for(make_studio(), auth=False)
    assert policy.rate is not None and policy.rate.rate == 0.5  # 30 a minute, even for one local user
    assert policy.origins == {"example.com", "10.0.0.7:7860", "studio.lan:8080"}
    guard = Guard(lambda scope, receive, send: None, policy)  # type: ignore[arg-type,return-value]
    assert guard._same_origin("https://example.com", host="127.0.0.1:7860")
    assert guard._same_origin("http://10.0.0.7:7860", host="127.0.0.1:7860")
    assert not guard._same_origin("https://evil.example", host="127.0.0.1:7860")

    clean_env.setenv("STUDIO_RATE_LIMIT", "0")
    assert policy_for(make_studio(), auth=True, exposed=True).rate is None  # 0 turns it off


BAD_VALUES = [
    ("STUDIO_PORT", "abc", "a whole number from 1 to 65535"),
    ("STUDIO_PORT", "0", "a whole number from 1 to 65535"),
    ("STUDIO_PORT", "70000", "a whole number from 1 to 65535"),
    ("STUDIO_PORT", "80.5", "a whole number from 1 to 65535"),
    ("STUDIO_JOBS_PER_DEVICE", "many", "a whole number from 1 to 64"),
    ("STUDIO_JOBS_PER_DEVICE", "0", "a whole number from 1 to 64"),
    ("STUDIO_JOBS_PER_DEVICE", "65", "a whole number from 1 to 64"),
    (
        "STUDIO_MEMORY_BUDGET",
        "lots",
        "a size such as 12GB or 512MB, or one per pool such as cpu=12GB,cuda=20GB",
    ),
    ("STUDIO_MEMORY_BUDGET", "tpu=3GB", "unknown memory pool 'tpu'"),
    ("STUDIO_MEMORY_BUDGET", "cpu=12GB,cuda=", "a size such as 12GB"),
    ("STUDIO_MEMORY_BUDGET", "0GB", "leaves no room for any model"),
    ("STUDIO_RATE_LIMIT", "abc", "a whole number of events a minute (0 turns the limit off)"),
    ("STUDIO_RATE_LIMIT", "-5", "a whole number of events a minute"),
    ("STUDIO_RATE_LIMIT", "1.5", "a whole number of events a minute"),
    ("STUDIO_ALLOWED_ORIGINS", "ftp://files.example", "comma-separated origins such as https://example.com"),
    ("STUDIO_ALLOWED_ORIGINS", "https://", "has no host"),
    ("STUDIO_ALLOWED_ORIGINS", "https://ok.example,example.com/app", "'example.com/app' is not a host"),
    ("STUDIO_ALLOWED_ORIGINS", "http://example.com:port", "bad port"),
    ("STUDIO_ALLOWED_HOSTS", "https://studio.example.com", "comma-separated host names"),
    ("STUDIO_ALLOWED_HOSTS", "studio.example.com:8080", "not a host name"),
    ("STUDIO_TRUSTED_PROXIES", "my-proxy", "not an IP address or network"),
    ("STUDIO_SESSION_IDLE", "soon", "a duration such as 30m"),
    ("STUDIO_SESSION_IDLE", "5s", "shorter than 10 seconds"),
    ("STUDIO_SESSION_MAX", "1w", "a duration such as 12h or 7d"),
]


def test_hosts_proxies_and_session_lifetimes_come_from_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("STUDIO_ALLOWED_HOSTS", "Studio.Example.com, *.corp.example,,10.0.0.7")
    clean_env.setenv("STUDIO_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    clean_env.setenv("STUDIO_SESSION_IDLE", "30m")
    clean_env.setenv("STUDIO_SESSION_MAX", "2d")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.allowed_hosts == {"studio.example.com", "*.corp.example", "10.0.0.7"}
    assert s.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert (s.session_idle, s.session_max) == (1800, 2 * 86400)


@pytest.mark.parametrize(("name", "value", "form"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_a_bad_value_names_the_variable_and_the_valid_form(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, form: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        Settings.from_env(data_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{name} must be ") and f"not {value!r}" in message
    assert form in message


def test_a_folder_is_not_a_users_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("STUDIO_USERS_FILE", str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"^STUDIO_USERS_FILE must be the path of a JSON users file .*folder"
    ):
        Settings.from_env(data_dir=tmp_path)


RATE_MESSAGE = (
    "STUDIO_RATE_LIMIT must be a whole number of events a minute (0 turns the limit off), not 'abc'"
)


def test_the_exact_message_and_every_bad_variable_at_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("STUDIO_RATE_LIMIT", "abc")
    with pytest.raises(ConfigError) as err:
        Settings.from_env(data_dir=tmp_path)
    assert str(err.value) == RATE_MESSAGE
    clean_env.setenv("STUDIO_PORT", "http")
    with pytest.raises(ConfigError) as err:
        Settings.from_env(data_dir=tmp_path)
    assert str(err.value).splitlines() == [
        "STUDIO_PORT must be a whole number from 1 to 65535, not 'http'",
        RATE_MESSAGE,
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["models", "list"],
        ["users", "list"],
        ["backup", "copy.db"],
        ["history"],
        ["rate", "1", "up"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_cli_command_stops_cleanly_on_a_bad_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    from studio import cli

    clean_env.setenv("STUDIO_RATE_LIMIT", "abc")
    clean_env.chdir(tmp_path)
    assert cli.main([*argv, "--data-dir", str(tmp_path / "d")]) == 2
    out, err = capsys.readouterr()
    assert err == "error: " + RATE_MESSAGE + "\n"
    assert out == "" and "Traceback" not in err
    assert not (tmp_path / "d").exists() and not (tmp_path / "copy.db").exists()  # nothing started
