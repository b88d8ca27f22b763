"""Chooses the chat model each agent talks to: an OpenAI-compatible endpoint, or the offline demo model."""

from __future__ import annotations

from agentstream_server.config import Settings
from agentstream_server.redact import redact_url
from agentstream_server.runtime.agents import AgentSpec
from agentstream_server.runtime.demo import DemoChatModel
from agentstream_server.runtime.llm import OpenAIChatModel, make_openai_client
from agentstream_server.runtime.model import ChatModel


class ModelProvider:
    """Owns the one shared HTTP client (connection pool) and hands each agent its chat model."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._models: dict[str, OpenAIChatModel] = {}  # by model name: a model holds no per-call state
        if settings.offline:
            self._client = None
            self._demo: DemoChatModel | None = DemoChatModel(token_delay_s=settings.demo_token_delay_s)
        else:
            self._demo = None
            self._client = make_openai_client(
                settings.openai_base_url,
                settings.openai_api_key,
                timeout_s=settings.llm_timeout_s,
                max_retries=settings.llm_max_retries,
                max_connections=max(settings.max_concurrent_runs, 100),
            )

    @property
    def description(self) -> str:
        """A log-friendly description of where LLM calls go (credentials in the URL masked)."""
        if self._demo is not None:
            return f"{self._demo.label}: embedded demo model, no LLM endpoint configured"
        base_url = self._settings.openai_base_url
        return f"{self._settings.model} at {redact_url(base_url) if base_url else 'the openai SDK default endpoint'}"

    def model_for(self, agent: AgentSpec) -> ChatModel:
        """The chat model for an agent (its own model name, else the server default)."""
        if self._demo is not None:
            return self._demo
        assert self._client is not None
        name = agent.model or self._settings.model
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = OpenAIChatModel(
                self._client,
                name,
                max_tokens=self._settings.llm_max_tokens or None,  # 0: not sent
                turn_timeout_s=self._settings.llm_turn_timeout_s,
            )
        return model

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()
