from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gs_video_report.config import (
    ApiKey,
    Settings,
    key_fingerprint,
    load_settings,
    resolve_api_key,
)
from gs_video_report.errors import AuthError, ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_without_any_config_file(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert s.model == "gemini-3.8-flash"
    assert s.api.api_version == "v1beta"
    assert s.templates.default == "chinese_transcript"
    assert s.config_file is None


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "model: from-file\napi:\n  request_timeout: 11\n  max_retries: 7\n"
    )
    env = {"GS_VIDEOREPORT_MODEL": "from-env", "GS_VIDEOREPORT_API__REQUEST_TIMEOUT": "22"}
    s = load_settings(env=env, cwd=tmp_path, overrides={"model": "from-flag", "output.dir": None})
    assert s.model == "from-flag"  # flag beats env and file
    assert s.api.request_timeout == 22  # env beats file
    assert s.api.max_retries == 7  # file beats default
    assert s.output.dir == Path("output")  # a flag left unset changes nothing
    assert s.config_file == tmp_path / "config.yaml"


def test_base_url_alias_and_user_config_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("api:\n  base_url: http://file\n")
    env = {"GS_VIDEOREPORT_HOME": str(home)}
    assert load_settings(env=env, cwd=tmp_path).api.base_url == "http://file"
    env["GS_VIDEOREPORT_BASE_URL"] = "http://env"
    assert load_settings(env=env, cwd=tmp_path).api.base_url == "http://env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: [unclosed\n", "malformed YAML at line 2"),
        ("api:\n  basee_url: x\n", "unknown setting 'api.basee_url'"),
        ("api:\n  request_timeout: soon\n", "setting 'api.request_timeout'"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=cfg, env={}, cwd=tmp_path)
    assert str(cfg) in str(err.value)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GS_VIDEOREPORT_API__MAX_RETRIES"):
        load_settings(env={"GS_VIDEOREPORT_API__MAX_RETRIES": "many"}, cwd=tmp_path)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(config_path=tmp_path / "nope.yaml", env={}, cwd=tmp_path)


def test_template_dirs_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "config.yaml").write_text("templates:\n  dirs: [mine]\n")
    s = load_settings(config_path=conf_dir / "config.yaml", env={}, cwd=tmp_path)
    assert s.templates.dirs == [conf_dir / "mine"]


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_example_documents_every_setting_with_its_default() -> None:
    example = yaml.safe_load((REPO / "config.yaml.example").read_text())
    documented = _flatten(example)
    defaults = _flatten(Settings().model_dump(mode="json", exclude={"config_file"}))
    assert documented.keys() == defaults.keys()
    for key, value in defaults.items():
        assert documented[key] == value, key
    # and the example is itself a valid config
    assert Settings.model_validate(example) == Settings()


def test_api_key_order_flag_env_dotenv(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    (tmp_path / ".env").write_text("GEMINI_API_KEY=from-dotenv\n")
    assert resolve_api_key(s, env={}, cwd=tmp_path).reveal() == "from-dotenv"
    env = {"GOOGLE_API_KEY": "google", "GEMINI_API_KEY": "gemini"}
    assert resolve_api_key(s, env=env, cwd=tmp_path).reveal() == "gemini"
    assert resolve_api_key(s, flag=" flag ", env=env, cwd=tmp_path).reveal() == "flag"
    custom = load_settings(env={"GS_VIDEOREPORT_API__KEY_ENV": "MY_KEY"}, cwd=tmp_path)
    assert resolve_api_key(custom, env={**env, "MY_KEY": "mine"}, cwd=tmp_path).reveal() == "mine"


def test_missing_key_is_an_auth_error(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    with pytest.raises(AuthError, match="--simulate"):
        resolve_api_key(s, env={}, cwd=tmp_path)


def test_key_never_prints_itself() -> None:
    key = ApiKey("AIza-secret-value", "test")
    assert "secret" not in repr(key) and "secret" not in str(key)
    assert key.fingerprint == key_fingerprint("AIza-secret-value")
    assert key.fingerprint.startswith("key-") and len(key.fingerprint) == 12
