"""The dashboard (``gs_videoreport serve``): a front-end beside the CLI, over the same
state database, through the engine's API only (``batch.api``) — no second way in.

``runs`` holds the batches this server process runs (started, resumed or retried from
the page) and turns the engine's typed events into wake-ups for the live pages; ``app``
is the aiohttp application (token, pages, server-sent events, files, the zip);
``files`` decides which files a batch may serve.
"""

from gs_video_report.web.app import Dashboard, serve

__all__ = ["Dashboard", "serve"]
