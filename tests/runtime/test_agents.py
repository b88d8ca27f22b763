"""Agents: the default catalog and the TOML file, with every configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentstream_server.runtime.agents import (
    DEFAULT_AGENT_NAME,
    DEFAULT_TOOL_TIMEOUT_S,
    AgentConfigError,
    AgentSpec,
    default_agents,
    load_agents,
)
from agentstream_server.runtime.builtin_tools import BUILTIN_TOOLS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_default_catalog_has_the_assistant_with_builtin_tools() -> None:
    catalog = default_agents()
    assert catalog.default == DEFAULT_AGENT_NAME == "assistant"
    assistant = catalog.agents["assistant"]
    assert [t.name for t in assistant.tools] == ["calculator", "current_time"]
    assert "calculator" in assistant.instructions
    assert (assistant.model, assistant.max_steps, assistant.temperature) == (None, 10, None)


async def test_a_full_agents_file_loads_with_builtin_and_custom_tools(tmp_path: Path) -> None:
    catalog = load_agents(
        write(
            tmp_path,
            """
default = "researcher"
[agents.researcher]
instructions = "Research."
model = "my-model"
tools = ["calculator", "current_time", "tests.runtime.helper_tools:lookup"]
max_steps = 4
temperature = 0.2
[agents.plain]
""",
        )
    )
    assert catalog.default == "researcher"
    researcher = catalog.agents["researcher"]
    assert (researcher.name, researcher.instructions) == ("researcher", "Research.")
    assert (researcher.model, researcher.max_steps, researcher.temperature) == ("my-model", 4, 0.2)
    assert [t.name for t in researcher.tools] == ["calculator", "current_time", "lookup"]
    assert researcher.tools[0] is BUILTIN_TOOLS["calculator"]
    assert await researcher.tools[2].call({"city": "Oslo"}) == '{"city": "Oslo", "days": 1}'
    assert catalog.agents["plain"] == AgentSpec(name="plain", instructions="")


def test_an_integer_temperature_becomes_a_float(tmp_path: Path) -> None:
    temperature = load_agents(write(tmp_path, "[agents.a]\ntemperature = 1")).agents["a"].temperature
    assert (temperature, type(temperature)) == (1.0, float)


@pytest.mark.parametrize(
    ("text", "default"),
    [
        ("[agents.b]\n[agents.assistant]", "assistant"),  # without `default`: 'assistant' when defined
        ("[agents.b]\n[agents.c]", "b"),  # else the first agent in the file
    ],
)
def test_the_default_agent_without_a_default_key(tmp_path: Path, text: str, default: str) -> None:
    assert load_agents(write(tmp_path, text)).default == default


def test_the_path_may_be_a_string(tmp_path: Path) -> None:
    assert load_agents(str(write(tmp_path, "[agents.a]"))).default == "a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agents", "is not valid TOML"),
        ("colour = 1\n[agents.a]", r"unknown top-level keys \['colour'\]"),
        ("", "define at least one agent"),
        ("agents = 3", "define at least one agent"),
        ("[agents]", "define at least one agent"),
        ("[agents]\na = 1", r"\[agents.a\] must be a table"),
        ('[agents.""]', "an agent name must not be blank"),
        ("[agents.a]\nmood = 'x'", r"\[agents.a\]: unknown keys \['mood'\]; allowed: "),
        ("[agents.a]\ninstructions = 3", "instructions must be of type str"),
        ("[agents.a]\nmodel = 3", "model must be of type str"),
        ("[agents.a]\nmodel = ' '", "model must not be empty"),
        ("[agents.a]\nmax_steps = 0", "max_steps must be at least 1, got 0"),
        ("[agents.a]\nmax_steps = 'x'", "max_steps must be of type int"),
        ("[agents.a]\nmax_steps = 2.5", "max_steps must be of type int"),
        ("[agents.a]\nmax_steps = true", "max_steps must be of type int"),
        ("[agents.a]\ntemperature = 'hot'", "temperature must be a number"),
        ("[agents.a]\ntemperature = false", "temperature must be a number"),
        ("[agents.a]\ntemperature = -0.1", "temperature must be between 0 and 2, got -0.1"),
        ("[agents.a]\ntemperature = 2.5", "temperature must be between 0 and 2"),
        ("[agents.a]\ntools = 'calculator'", "tools must be of type list"),
        ("[agents.a]\ntools = [1]", "tools must be strings"),
        ("[agents.a]\ntools = ['nope']", r"unknown tool 'nope'; built-ins are \['calculator', 'current_time'\]"),
        ("[agents.a]\ntools = ['tests.nothing:fn']", "cannot import module 'tests.nothing'"),
        ("[agents.a]\ntools = ['tests.runtime.helper_tools:missing']", "has no function 'missing'"),
        ("[agents.a]\ntools = ['tests.runtime.helper_tools:NOT_A_FUNCTION']", "is not a function"),
        ("[agents.a]\ntools = ['calculator', 'calculator']", "two tools are named 'calculator'"),
        (
            "[agents.a]\ntools = ['calculator', 'tests.runtime.helper_tools:calculator']",
            "two tools are named 'calculator'",
        ),
        ("default = 'b'\n[agents.a]", r"default agent 'b' is not defined; agents: \['a'\]"),
        ("default = 1\n[agents.a]", "default must be a string"),
    ],
)
def test_config_errors_say_where_and_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(AgentConfigError, match=message) as caught:
        load_agents(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match=r"cannot read agents file .*absent\.toml: No such file"):
        load_agents(tmp_path / "absent.toml")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_bytes(b"[agents.a]\ninstructions = '\xff'\n")
    with pytest.raises(AgentConfigError, match="is not UTF-8 text"):
        load_agents(path)


def test_tool_timeouts_default_to_a_minute_and_are_set_per_agent_and_per_tool(tmp_path: Path) -> None:
    catalog = load_agents(
        write(
            tmp_path,
            """
[agents.a]
tools = ["calculator", "current_time", "tests.runtime.helper_tools:lookup"]
tool_timeout = 5
[agents.a.tool_timeouts]
lookup = 0.5
[agents.b]
tools = ["calculator"]
""",
        )
    )
    a, b = catalog.agents["a"], catalog.agents["b"]
    assert (a.timeout_for("calculator"), a.timeout_for("lookup"), a.timeout_for("anything")) == (5.0, 0.5, 5.0)
    assert b.timeout_for("calculator") == DEFAULT_TOOL_TIMEOUT_S == 60.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agents.a]\ntool_timeout = 0", "tool_timeout must be a positive number of seconds, got 0"),
        ("[agents.a]\ntool_timeout = -1.5", "tool_timeout must be a positive number of seconds"),
        ("[agents.a]\ntool_timeout = 'slow'", "tool_timeout must be a positive number of seconds"),
        ("[agents.a]\ntool_timeout = true", "tool_timeout must be a positive number of seconds"),
        ("[agents.a]\ntool_timeout = inf", "tool_timeout must be a positive number of seconds, got inf"),
        ("[agents.a]\ntool_timeouts = 5", "tool_timeouts must be of type dict"),
        (
            "[agents.a]\ntools = ['calculator']\n[agents.a.tool_timeouts]\nlookup = 1",
            r"tool_timeouts names 'lookup', which is not one of its tools: \['calculator'\]",
        ),
        (
            "[agents.a]\ntools = ['calculator']\n[agents.a.tool_timeouts]\ncalculator = 0",
            "tool_timeouts.calculator must be a positive number of seconds",
        ),
    ],
)
def test_tool_timeout_errors_say_where_and_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        load_agents(write(tmp_path, text))
