"""Settings: environment parsing, overrides, offline detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentstream_server.config import Settings


def test_defaults_are_offline_with_documented_limits() -> None:
    settings = Settings.from_env({})
    assert settings.offline
    assert settings.max_input_bytes == 1024 * 1024
    assert settings.shutdown_grace_s == 10.0
    assert settings.tool_threads == 32


def test_environment_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "AGENTSTREAM_MAX_RUNS": "3",
            "AGENTSTREAM_RUN_TIMEOUT": "2.5",
            "AGENTSTREAM_AGENTS": "agents.toml",
            "AGENTSTREAM_TOOL_THREADS": "4",
        }
    )
    assert not settings.offline
    assert settings.max_concurrent_runs == 3
    assert settings.run_timeout_s == 2.5
    assert settings.agents_file == Path("agents.toml")
    assert settings.tool_threads == 4


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AGENTSTREAM_MAX_RUNS", "0"),
        ("AGENTSTREAM_MAX_RUNS", "many"),
        ("AGENTSTREAM_RUN_TIMEOUT", "-1"),
        ("AGENTSTREAM_TOOL_THREADS", "0"),
    ],
)
def test_a_malformed_variable_is_named_in_the_error(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=var):
        Settings.from_env({var: value})


def test_overrides_replace_only_given_fields() -> None:
    settings = Settings.from_env({"AGENTSTREAM_PORT": "7000"}).with_overrides(port=None, host="0.0.0.0")
    assert (settings.host, settings.port) == ("0.0.0.0", 7000)


def test_max_unread_must_stay_below_max_retained() -> None:
    with pytest.raises(ValueError, match="AGENTSTREAM_MAX_UNREAD"):
        Settings.from_env({"AGENTSTREAM_MAX_UNREAD": "500", "AGENTSTREAM_MAX_RETAINED": "500"})


def test_llm_max_tokens_defaults_to_4096_and_zero_means_not_sent() -> None:
    assert Settings.from_env({}).llm_max_tokens == 4096
    assert Settings.from_env({"AGENTSTREAM_LLM_MAX_TOKENS": "0"}).llm_max_tokens == 0
    with pytest.raises(ValueError, match="AGENTSTREAM_LLM_MAX_TOKENS"):
        Settings.from_env({"AGENTSTREAM_LLM_MAX_TOKENS": "-1"})


def test_llm_turn_timeout_defaults_to_120_seconds_and_must_be_positive() -> None:
    assert Settings.from_env({}).llm_turn_timeout_s == 120.0
    assert Settings.from_env({"AGENTSTREAM_LLM_TURN_TIMEOUT": "7.5"}).llm_turn_timeout_s == 7.5
    with pytest.raises(ValueError, match="AGENTSTREAM_LLM_TURN_TIMEOUT"):
        Settings.from_env({"AGENTSTREAM_LLM_TURN_TIMEOUT": "0"})


def test_redis_max_connections_is_parsed_and_leaves_room_for_the_blocking_readers() -> None:
    assert Settings.from_env({}).redis_max_connections == 64
    assert Settings.from_env({"AGENTSTREAM_REDIS_MAX_CONNECTIONS": "8"}).redis_max_connections == 8
    with pytest.raises(ValueError, match="AGENTSTREAM_REDIS_MAX_CONNECTIONS"):
        Settings.from_env({"AGENTSTREAM_REDIS_MAX_CONNECTIONS": "3"})


def test_workers_default_to_one_and_are_parsed() -> None:
    assert Settings.from_env({}).workers == 1
    settings = Settings.from_env({"AGENTSTREAM_WORKERS": "4", "AGENTSTREAM_STORE": "redis://127.0.0.1:6379/0"})
    assert settings.workers == 4
    with pytest.raises(ValueError, match="AGENTSTREAM_WORKERS"):
        Settings.from_env({"AGENTSTREAM_WORKERS": "0"})


def test_several_workers_refuse_the_memory_store_unless_allowed() -> None:
    with pytest.raises(ValueError, match="AGENTSTREAM_WORKERS_ALLOW_MEMORY") as refused:
        Settings.from_env({"AGENTSTREAM_WORKERS": "2"})
    assert "NOT_FOUND" in str(refused.value)
    with pytest.raises(ValueError, match="memory store"):
        Settings().with_overrides(workers=2)
    allowed = Settings.from_env({"AGENTSTREAM_WORKERS": "2", "AGENTSTREAM_WORKERS_ALLOW_MEMORY": "1"})
    assert (allowed.workers, allowed.store) == (2, "memory")


def test_flags_are_checked_together_with_the_environment() -> None:
    env = {"AGENTSTREAM_WORKERS": "4"}
    settings = Settings.from_env(env, store="redis://127.0.0.1:6379/0")  # the environment alone is refused
    assert (settings.workers, settings.store) == (4, "redis://127.0.0.1:6379/0")
    assert Settings.from_env(env, workers_allow_memory=True).workers == 4
    assert Settings.from_env(env, workers=1, port=None).workers == 1  # what each worker is started with


def test_every_auth_setting_has_an_environment_variable() -> None:
    settings = Settings.from_env(
        {
            "AGENTSTREAM_AUTH_TOKENS": "tokens.toml",
            "AGENTSTREAM_AUTH_JWKS": "jwks.json",
            "AGENTSTREAM_AUTH_JWT_ISSUER": "https://issuer.test",
            "AGENTSTREAM_AUTH_JWT_AUDIENCE": "agentstream",
            "AGENTSTREAM_AUTH_TENANT_CLAIM": "org",
            "AGENTSTREAM_INSECURE": "yes",
        }
    )
    assert (settings.auth_tokens_file, settings.auth_jwks_file) == (Path("tokens.toml"), Path("jwks.json"))
    assert (settings.auth_jwt_issuer, settings.auth_jwt_audience) == ("https://issuer.test", "agentstream")
    assert settings.auth_tenant_claim == "org" and settings.insecure and settings.auth_configured
    defaults = Settings.from_env({})
    assert not defaults.auth_configured and not defaults.insecure and defaults.auth_tenant_claim == "tenant"
