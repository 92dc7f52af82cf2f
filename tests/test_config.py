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
from gs_video_report.errors import AuthError, ConfigError, ExitCode
from gs_video_report.simulator import Simulator
from tests.conftest import REPO, SAMPLES


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


# -- numbers and names are checked up front ------------------------------------------

# Every numeric setting with a value it must refuse (and why).
BAD_NUMBERS = [
    ("api.request_timeout", ".inf", "finite"),
    ("api.request_timeout", ".nan", "finite"),
    ("api.request_timeout", "1.0e+308", "less than or equal to 604800"),
    ("api.request_timeout", "0", "greater than 0"),
    ("api.request_timeout", "true", "not true/false"),
    ("api.upload_timeout", "-5", "greater than 0"),
    ("api.upload_timeout", ".inf", "finite"),
    ("api.processing_timeout", "1.0e+308", "less than or equal to 604800"),
    ("api.processing_timeout_per_gb", ".nan", "finite"),
    ("api.processing_timeout_per_gb", "-1", "greater than or equal to 0"),
    ("api.max_retries", "-1", "greater than or equal to 0"),
    ("api.max_retries", "1000", "less than or equal to 20"),
    ("video.max_file_size_mb", ".inf", "finite"),
    ("video.max_file_size_mb", "0", "greater than 0"),
    ("video.max_file_size_mb", "10000000000", "less than or equal to 102400"),
    ("video.part_minutes", ".nan", "finite"),
    ("video.part_minutes", "1.0e+9", "less than or equal to 1440"),
    ("limits.default.rpm", ".inf", "finite"),
    ("limits.default.rpm", "0", "greater than 0"),
    ("limits.default.tpm", "1.0e+308", "less than or equal to"),
    ("prices.my-model.input", ".nan", "finite"),
    ("prices.my-model.output", "-0.1", "greater than or equal to 0"),
    ("prices.my-model.batch_input", ".inf", "finite"),
    ("prices.my-model.batch_output", "1.0e+308", "less than or equal to"),
]
BAD_MODELS = ["../../x", "a/b", "http://evil.example/x", "models/../x", "..", "gemini 3", ""]


def _nested(dotted: str, raw: str) -> dict[str, object]:
    """``{"api": {"request_timeout": <raw as YAML>}}``; a price also gets its other field."""
    data: dict[str, object] = {}
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    if parents[:1] == ["prices"]:
        node.update(input=1.0, output=1.0)
    node[last] = yaml.safe_load(raw)
    return data


@pytest.mark.parametrize(("key", "raw", "why"), BAD_NUMBERS)
def test_a_bad_number_in_the_config_file_names_file_and_key(
    tmp_path: Path, key: str, raw: str, why: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_nested(key, raw)))
    with pytest.raises(ConfigError) as err:
        load_settings(config_path=cfg, env={}, cwd=tmp_path)
    assert str(err.value).startswith(f"{cfg}: setting '{key}': ")
    assert why in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "raw", "why"), [b for b in BAD_NUMBERS if not b[0].startswith("prices.")]
)
def test_a_bad_number_in_the_environment_names_the_variable(
    tmp_path: Path, key: str, raw: str, why: str
) -> None:
    variable = "GS_VIDEOREPORT_" + key.upper().replace(".", "__")
    with pytest.raises(ConfigError) as err:
        load_settings(env={variable: raw}, cwd=tmp_path)  # read as YAML, as the file is
    assert str(err.value).startswith(f"{variable}: setting '{key}': ")
    assert why in str(err.value)


def test_a_bad_number_inside_a_section_variable_names_that_variable(tmp_path: Path) -> None:
    env = {"GS_VIDEOREPORT_API": "{request_timeout: .inf}"}
    with pytest.raises(ConfigError, match=r"^GS_VIDEOREPORT_API: setting 'api.request_timeout'"):
        load_settings(env=env, cwd=tmp_path)


@pytest.mark.parametrize("model", BAD_MODELS)
def test_a_model_name_must_be_a_plain_model_id(tmp_path: Path, model: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": model}))
    with pytest.raises(ConfigError, match=rf"^{cfg}: setting 'model': .*not a model id"):
        load_settings(config_path=cfg, env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^GS_VIDEOREPORT_MODEL: setting 'model'"):
        load_settings(env={"GS_VIDEOREPORT_MODEL": model or "''"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^command line: setting 'model'"):
        load_settings(env={}, cwd=tmp_path, overrides={"model": model})


def test_model_names_in_limits_and_prices_are_model_ids_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  ../x: {rpm: 5}\n")
    with pytest.raises(ConfigError, match=r"setting 'limits.../x': .*not a model id"):
        load_settings(config_path=cfg, env={}, cwd=tmp_path)


@pytest.mark.parametrize(
    "model", ["gemini-3.8-flash", "models/gemini-2.5-pro", "gemini-2.0-flash-001", "my_tuned.v2"]
)
def test_real_model_ids_and_the_largest_values_are_accepted(tmp_path: Path, model: str) -> None:
    env = {
        "GS_VIDEOREPORT_API__REQUEST_TIMEOUT": str(7 * 24 * 3600),
        "GS_VIDEOREPORT_API__PROCESSING_TIMEOUT_PER_GB": "0",
        "GS_VIDEOREPORT_LIMITS__DEFAULT__RPM": "0.5",
    }
    s = load_settings(env=env, cwd=tmp_path, overrides={"model": model})
    assert s.model == model and s.api.request_timeout == 604800
    assert s.limits_for(model).rpm == 0.5


def test_api_version_cannot_change_the_request_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an API version"):
        load_settings(env={"GS_VIDEOREPORT_API__API_VERSION": "../v1"}, cwd=tmp_path)


# Through the CLI: exit 3, one line, and nothing reaches the (simulated) API.


def _one_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == ExitCode.INPUT, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.mark.parametrize(
    "command",
    [
        ["batch", "-d", str(SAMPLES), "--dry-run"],
        ["batch", "-d", str(SAMPLES), "--simulate", "-q"],
        ["main", str(SAMPLES / "intro_to_fractions.mp4"), "--simulate"],
    ],
)
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("file", "c.yaml: setting 'api.request_timeout': Input should be a finite number"),
        ("env", "GS_VIDEOREPORT_API__REQUEST_TIMEOUT: setting 'api.request_timeout': Input"),
        ("env nan", "GS_VIDEOREPORT_VIDEO__PART_MINUTES: setting 'video.part_minutes': Input"),
        ("huge", "GS_VIDEOREPORT_API__UPLOAD_TIMEOUT: setting 'api.upload_timeout': Input"),
        ("flag", "command line: setting 'model': '../x' is not a model id"),
        ("flag URL", "command line: setting 'model': 'http://x/y' is not a model id"),
    ],
)
def test_bad_settings_stop_the_cli_before_any_call(
    cli,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
    source: str,
    expected: str,
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)  # a real call would land here
    args = [*command, "-o", str(tmp_path / "out")]
    if source == "file":
        (tmp_path / "c.yaml").write_text("api:\n  request_timeout: .inf\n")
        args += ["-c", str(tmp_path / "c.yaml")]
    elif source == "env":
        monkeypatch.setenv("GS_VIDEOREPORT_API__REQUEST_TIMEOUT", "inf")
    elif source == "env nan":
        monkeypatch.setenv("GS_VIDEOREPORT_VIDEO__PART_MINUTES", "nan")
    elif source == "huge":
        monkeypatch.setenv("GS_VIDEOREPORT_API__UPLOAD_TIMEOUT", "1e308")
    else:
        args += ["-m", "../x" if source == "flag" else "http://x/y"]

    line = _one_error(cli(*args))

    assert expected in line
    assert sim.api_calls() == 0, sim.stats()["calls"]
    assert not (tmp_path / "out").exists()
