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
    assert {t for m in hub for t in m.tabs} == set(TABS), "hub models for GPU users on every tab"


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
