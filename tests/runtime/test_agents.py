"""Agents: the default catalog and the TOML file with every configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.runtime.agents import AgentConfigError, default_agents, load_agents


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_default_catalog_has_the_assistant_with_builtin_tools() -> None:
    catalog = default_agents()
    assert catalog.default == "assistant"
    assert [t.name for t in catalog.agents["assistant"].tools] == ["calculator", "current_time"]


def test_a_full_agents_file_loads(tmp_path: Path) -> None:
    catalog = load_agents(
        write(
            tmp_path,
            """
default = "researcher"
[agents.researcher]
instructions = "Research."
model = "my-model"
tools = ["calculator", "tests.runtime.test_tools:lookup"]
max_steps = 4
temperature = 0.2
[agents.plain]
""",
        )
    )
    assert catalog.default == "researcher"
    researcher = catalog.agents["researcher"]
    assert (researcher.model, researcher.max_steps, researcher.temperature) == ("my-model", 4, 0.2)
    assert [t.name for t in researcher.tools] == ["calculator", "lookup"]
    assert catalog.agents["plain"].tools == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agents", "not valid TOML"),
        ("colour = 1\n[agents.a]", "unknown top-level keys"),
        ("", "at least one agent"),
        ("[agents.a]\nmood = 'x'", "unknown keys"),
        ("[agents.a]\nmax_steps = 0", "max_steps must be at least 1"),
        ("[agents.a]\nmax_steps = 'x'", "max_steps must be of type int"),
        ("[agents.a]\ntemperature = 'hot'", "temperature must be a number"),
        ("[agents.a]\ntools = ['nope']", "unknown tool 'nope'"),
        ("[agents.a]\ntools = ['tests.nothing:fn']", "cannot import module"),
        ("[agents.a]\ntools = ['calculator', 'calculator']", "listed twice"),
        ("default = 'b'\n[agents.a]", "default agent 'b' is not defined"),
    ],
)
def test_config_errors_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        load_agents(write(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="cannot read agents file"):
        load_agents(tmp_path / "absent.toml")
