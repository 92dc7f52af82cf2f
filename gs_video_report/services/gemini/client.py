"""The one place that builds a ``genai.Client``, so the service's client and the key
pool's clients say the same things on the wire (endpoint, API version, timeout,
transport).

The transport pin: with aiohttp importable, the SDK's async path would use it and, after
a connection error, re-send the request once 1-10 s later on its own, which can bill a
generation twice and multiplies our retries. Handing the SDK an httpx2 transport makes it
stay on httpx2 (it only picks aiohttp when no transport is given), and ``retries=0``
keeps that transport from retrying connects. The pin is set whether or not aiohttp is
installed: the SDK would build the same httpx2 transport anyway, and the client then
behaves the same on every machine (also in the tests, where aiohttp is absent).
"""

from __future__ import annotations

from typing import Any

import httpx2
from google import genai
from google.genai import types

from gs_video_report.config import ApiKey, ApiSettings


def ms(seconds: float) -> int:
    """The SDK's timeouts are whole milliseconds; 0 would mean none at all."""
    return max(1, int(seconds * 1000))


def http_options(api: ApiSettings, **http: Any) -> types.HttpOptions:
    """Client-level options from the settings; ``http`` overrides any of them."""
    options: dict[str, Any] = {
        "api_version": api.api_version,
        "timeout": ms(api.request_timeout),
        # a fresh transport per client: closing a client closes its transport
        "async_client_args": {"transport": httpx2.AsyncHTTPTransport(retries=0)},
    }
    if api.base_url:
        options["base_url"] = api.base_url
    options.update(http)
    return types.HttpOptions(**options)


def build_client(key: ApiKey | str, api: ApiSettings, **http: Any) -> genai.Client:
    """A client for ``key`` against the configured endpoint. Keep it referenced while it
    is used: a dropped ``genai.Client`` closes its connections, mid-call too."""
    secret = key.reveal() if isinstance(key, ApiKey) else key.strip()
    return genai.Client(api_key=secret, http_options=http_options(api, **http))
