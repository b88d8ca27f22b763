"""The agents file's MCP parts: [mcp_servers.NAME] tables and agents' mcp_servers lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentstream_server.runtime.agents import AgentConfigError, load_agents
from agentstream_server.runtime.mcp_config import McpServerUse


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return path


def test_servers_and_an_agents_use_of_them(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    catalog = load_agents(
        write(
            tmp_path,
            """
[mcp_servers.files]
command = "python"
args = ["server.py", "--quiet"]
env = { TOKEN = "x" }
cwd = "srv"
startup_timeout = 5

[mcp_servers.search]
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer t" }

[agents.a]
mcp_servers = ["files", { server = "search", tools = ["web_search"] }]
tool_timeouts = { web_search = 5 }

[agents.b]
""",
        )
    )
    files, search = catalog.mcp_servers["files"], catalog.mcp_servers["search"]
    assert (files.command, files.args, dict(files.env), files.cwd) == (
        "python",
        ("server.py", "--quiet"),
        {"TOKEN": "x"},
        tmp_path / "srv",
    )
    assert files.startup_timeout_s == 5.0 and files.url is None
    assert (search.url, dict(search.headers)) == ("https://mcp.example.com/mcp", {"Authorization": "Bearer t"})
    assert "Bearer" not in search.description  # header values may be secrets: never in logs or errors
    assert catalog.agents["a"].mcp_servers == (McpServerUse("files"), McpServerUse("search", frozenset({"web_search"})))
    assert catalog.agents["b"].mcp_servers == ()


def test_a_command_server_runs_in_the_agents_files_folder_by_default(tmp_path: Path) -> None:
    catalog = load_agents(write(tmp_path, '[mcp_servers.s]\ncommand = "x"\n[agents.a]\nmcp_servers = ["s"]'))
    assert catalog.mcp_servers["s"].cwd == tmp_path.resolve()


SERVER = '[mcp_servers.s]\ncommand = "x"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mcp_servers = 1\n[agents.a]", "mcp_servers must be tables"),
        ("[mcp_servers.s]\n[agents.a]", r"\[mcp_servers.s\]: set either command .* or url"),
        ('[mcp_servers.s]\ncommand = "x"\nurl = "http://h/mcp"\n[agents.a]', "set either command"),
        ('[mcp_servers.s]\ncommand = "x"\nport = 1\n[agents.a]', r"unknown keys \['port'\]"),
        ('[mcp_servers.s]\ncommand = ""\n[agents.a]', "command must be a non-empty string"),
        ('[mcp_servers.s]\ncommand = "x"\nargs = "a b"\n[agents.a]', "args must be a list of strings"),
        ('[mcp_servers.s]\ncommand = "x"\nenv = { A = 1 }\n[agents.a]', "env must be a table of strings"),
        ('[mcp_servers.s]\ncommand = "x"\ncwd = "nowhere"\n[agents.a]', "cwd .* is not a folder"),
        ('[mcp_servers.s]\ncommand = "x"\nheaders = {}\n[agents.a]', "headers belong to a url"),
        ('[mcp_servers.s]\nurl = "ftp://h"\n[agents.a]', "url must be an http:// or https:// URL"),
        ('[mcp_servers.s]\nurl = "http://h/mcp"\nargs = []\n[agents.a]', "args belongs to a command"),
        ('[mcp_servers.s]\ncommand = "x"\nstartup_timeout = 0\n[agents.a]', "startup_timeout must be a positive"),
        ('[mcp_servers."a b"]\ncommand = "x"\n[agents.a]', "a server name must be"),
        (SERVER + '[agents.a]\nmcp_servers = "s"', "mcp_servers must be a list"),
        (SERVER + '[agents.a]\nmcp_servers = ["t"]', r"unknown MCP server 't'; servers: s"),
        ('[agents.a]\nmcp_servers = ["t"]', r"unknown MCP server 't'; servers: none"),
        (SERVER + '[agents.a]\nmcp_servers = ["s", "s"]', "MCP server 's' is listed twice"),
        (SERVER + '[agents.a]\nmcp_servers = [{ name = "s" }]', "an mcp_servers entry is a server name or"),
        (SERVER + '[agents.a]\nmcp_servers = [{ server = "s", tools = "x" }]', "must be a list of tool names"),
        (SERVER + "[agents.a]\nmcp_servers = [1]", "entries must be server names"),
        ("[agents.a]\ntool_timeouts = { web = 1 }", "tool_timeouts names 'web', which is not one of its tools"),
    ],
)
def test_malformed_mcp_parts_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        load_agents(write(tmp_path, text))
