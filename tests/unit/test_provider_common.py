"""Rules every real provider shares: marked wire fixtures, and credentials from the argument,
the environment or OpenBB's user settings (add a row when a provider joins)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obbws_jupyter.protocol import OPENBB_SETTINGS_ENV, MissingCredentialsError, get_provider
from tests.provider_fixtures import FIXTURES, MARKS, load_fixture

#: provider -> (environment variable, key in OpenBB's user settings "credentials")
KEYED = {"tiingo": ("TIINGO_API_KEY", "tiingo_token"), "fmp": ("FMP_API_KEY", "fmp_api_key")}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.jsonl")), ids=lambda p: p.stem)
def test_every_fixture_sample_is_marked_captured_documented_or_built(path: Path) -> None:
    """Each fixture line says where it comes from ([cap], [doc] or [built]) and its direction."""
    samples = load_fixture(path.stem)
    assert samples
    for sample in samples.values():
        assert sample.note.startswith(MARKS), sample.name
        assert sample.dir in ("in", "out"), sample.name


@pytest.mark.parametrize("provider", sorted(KEYED))
def test_api_key_comes_from_argument_environment_or_openbb_settings(
    provider: str, tmp_path: Path
) -> None:
    """api_key=, then the provider's environment variable, then OpenBB's user settings."""
    env_var, setting = KEYED[provider]
    spec = get_provider(provider)
    settings = tmp_path / "user_settings.json"
    settings.write_text(json.dumps({"credentials": {setting: "from-openbb"}}))
    env = {OPENBB_SETTINGS_ENV: str(settings)}
    assert spec.resolve({"symbol": "aapl"}, env)["api_key"] == "from-openbb"
    env[env_var] = "from-env"
    assert spec.resolve({"symbol": "aapl"}, env)["api_key"] == "from-env"
    assert spec.resolve({"symbol": "aapl", "api_key": "given"}, env)["api_key"] == "given"
    assert spec.secret_params == frozenset({"api_key"})


@pytest.mark.parametrize("provider", sorted(KEYED))
def test_missing_key_names_all_three_places(provider: str, tmp_path: Path) -> None:
    """Without a key the error names the argument, the variable and the OpenBB setting."""
    env_var, setting = KEYED[provider]
    env = {OPENBB_SETTINGS_ENV: str(tmp_path / "none.json")}
    with pytest.raises(MissingCredentialsError) as info:
        get_provider(provider).resolve({"symbol": "aapl"}, env)
    text = str(info.value)
    assert "api_key=" in text and env_var in text and setting in text
