"""The key pool from your own Python code, runnable as it is (against the built-in
simulator, so no key and no network are needed):

    python examples/key_pool.py

With real keys, drop the simulator and build the pool from your keys file or config:
``KeyPool.from_keys_file("keys.txt")`` / ``KeyPool.from_config("config.yaml")``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from google.genai import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gs_video_report.config import load_settings
from gs_video_report.services.gemini import KeyPool
from gs_video_report.simulator import Simulator

VIDEO = Path(__file__).parent / "videos" / "intro_to_fractions.mp4"
MODEL = "gemini-3.8-flash"


async def describe(client: Any, video: Path, question: str) -> str:
    """Your own code: upload, wait for ACTIVE, ask. It gets a fresh client per attempt;
    the pool decides the key."""
    file = await client.aio.files.upload(file=str(video))
    while file.state.name != "ACTIVE":
        await asyncio.sleep(0.5)
        file = await client.aio.files.get(name=file.name)
    answer = await client.aio.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_uri(file_uri=file.uri, mime_type="video/mp4"), question],
    )
    await client.aio.files.delete(name=file.name)
    return str(answer.text)


def main() -> int:
    with Simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.txt"
        keys.write_text(
            "# three keys, two Google Cloud projects\n"
            "AIza-example-key-one   project=school label=school-1\n"
            "AIza-example-key-two   project=school label=school-2\n"
            "AIza-example-key-three project=home   label=home\n"
        )
        sim.set_project("AIza-example-key-one", "school")
        sim.set_project("AIza-example-key-two", "school")
        sim.set_project("AIza-example-key-three", "home")
        sim.invalidate_key("AIza-example-key-one")  # a revoked key
        sim.exhaust_daily(project="school")  # school's daily quota is gone
        api = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}).api

        pool = KeyPool.from_keys_file(keys, api=api)

        # 1. await pool.run(fn, ...): key-level failures move to another key
        text = asyncio.run(pool.run(describe, VIDEO, "What is this lecture about?"))
        print(f"answer: {text[:70]}...")

        # 2. pool.run_sync(fn, ...) for synchronous code
        names = pool.run_sync(lambda client: [f.name for f in client.files.list()])
        print(f"files left on the server: {len(names)}")

        # 3. a context manager: the block's success or failure is recorded
        with pool.client() as client:
            list(client.files.list())

        # 4. a decorator: the function gets the client as its first argument
        @pool.retrying()
        def count_files(client: Any) -> int:
            return len(list(client.files.list()))

        count_files()

        for state in pool.states.values():
            status = state.describe(pool.clock())
            print(f"{state.fingerprint} {state.label:9} {state.project:7} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
