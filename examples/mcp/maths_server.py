"""An example MCP server (the official `mcp` SDK) with two tools; any MCP server in any language works the same.

python maths_server.py              # stdio: what agents.toml beside this file starts
python maths_server.py --http 8000  # streamable HTTP on http://127.0.0.1:8000/mcp
"""

from __future__ import annotations

import ast
import operator
import sys

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

server = MCPServer("maths", log_level="WARNING")
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@server.tool(structured_output=False)
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses, e.g. "12 * (3 + 4)"."""

    def value(node: ast.expr) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {ast.unparse(node)}")

    if len(expression) > 200:
        raise ValueError("the expression is longer than 200 characters")
    result = value(ast.parse(expression, mode="eval").body)
    return str(int(result)) if result.is_integer() else str(result)


class Stats(BaseModel):
    """Counts of a text."""

    words: int
    characters: int


@server.tool()
def text_stats(text: str) -> Stats:
    """Count the words and characters of a text (a structured result: the agent gets it as JSON)."""
    return Stats(words=len(text.split()), characters=len(text))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
