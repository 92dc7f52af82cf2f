"""One client builder: the key pool's clients and the service's client are built alike
(endpoint, version, timeout, the httpx2 transport pin), checked on real SDK clients."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from google import genai
from google.genai import _api_client

from gs_video_report.config import ApiKey, ApiSettings, PoolKey
from gs_video_report.services.gemini import GeminiService, KeyPool
from gs_video_report.simulator import Simulator
from tests.conftest import TEST_KEY

POOL_KEY = "AIzaPOOL-client-builder-0000000000"


def _wire(client: genai.Client) -> dict[str, object]:
    """What the client sends with, minus the key header and the per-client transport."""
    options = client._api_client._http_options.model_dump(exclude={"async_client_args"})
    options["headers"] = {k: v for k, v in options["headers"].items() if k != "x-goog-api-key"}
    return options


def test_pool_and_service_clients_reach_the_endpoint_with_the_same_pin(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if aiohttp were installed: the SDK would then pick it unless a transport is pinned.
    monkeypatch.setattr(_api_client, "has_aiohttp", True)
    api = ApiSettings(base_url=sim.url, request_timeout=42)

    async def main() -> None:
        pool = KeyPool([PoolKey.of(ApiKey(POOL_KEY, "t"))], api=api)
        pool_client = pool.make_client(pool.keys[0])
        async with GeminiService(ApiKey(TEST_KEY, "t"), api) as service:
            service_client = service._client
            assert _wire(pool_client) == _wire(service_client)
            assert _wire(service_client)["timeout"] == 42_000
            transports = []
            for client in (pool_client, service_client):
                assert not client._api_client._use_aiohttp()
                transport = client._api_client._async_httpx_client._transport
                assert isinstance(transport, httpx2.AsyncHTTPTransport)
                assert transport._pool._retries == 0
                transports.append(transport)
                await client.aio.files.list()  # really reaches the configured endpoint
            assert transports[0] is not transports[1]  # closing one client spares the other
        await pool_client.aio.aclose()

    asyncio.run(main())
    stats = sim.stats()
    assert stats["calls"]["list_files"] == 2 and len(stats["keys_seen"]) == 2
