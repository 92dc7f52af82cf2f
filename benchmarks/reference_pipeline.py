"""The hand-written pipeline a user would write with google-genai and asyncio: the yardstick
``benchmarks/pipeline.py`` holds ``gs_videoreport batch`` against (issue 13).

Every video: upload (at most ``--uploads`` at a time), poll every ``--poll`` seconds until
ACTIVE, one generateContent call in JSON mode with the template's prompt and schema (at
most ``--parallel`` at a time), write the answer beside the others. No checkpoint, no
retries, no rate limiter, no report: what the batch adds on top is what is measured.

    GEMINI_API_KEY=... python benchmarks/reference_pipeline.py --base-url URL -d in -o out -p 8

It prints one JSON line: videos written, wall and CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from google import genai
from google.genai import types

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "templates" / "comprehensive_lesson.yaml"
MODEL = "gemini-3.8-flash"


async def one_video(
    client: genai.Client,
    path: Path,
    out: Path,
    template: dict[str, Any],
    uploads: asyncio.Semaphore,
    generates: asyncio.Semaphore,
    poll_s: float,
    base_url: str,
) -> None:
    # base_url per call too: the SDK uses the upload URL the server hands back as it is
    options = types.HttpOptions(base_url=base_url)
    async with uploads:
        file = await client.aio.files.upload(
            file=path,
            config=types.UploadFileConfig(mime_type="video/mp4", http_options=options),
        )
    while file.state is not None and file.state.name == "PROCESSING":
        await asyncio.sleep(poll_s)
        assert file.name is not None
        file = await client.aio.files.get(name=file.name)
    if file.state is None or file.state.name != "ACTIVE":
        raise RuntimeError(f"{path.name}: {file.state}")
    prompt = template["prompt"].replace("{{ video_title }}", path.stem)
    async with generates:
        response = await client.aio.models.generate_content(
            model=MODEL,
            contents=[types.Part.from_uri(file_uri=file.uri or "", mime_type="video/mp4"), prompt],
            config=types.GenerateContentConfig(
                system_instruction=template["system_instruction"],
                response_mime_type="application/json",
                response_json_schema=template["schema"],
            ),
        )
    (out / f"{path.stem}.json").write_text(response.text or "", encoding="utf-8")


async def pipeline(args: argparse.Namespace) -> int:
    template = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    client = genai.Client(
        api_key=os.environ["GEMINI_API_KEY"], http_options=types.HttpOptions(base_url=args.base_url)
    )
    args.output.mkdir(parents=True, exist_ok=True)
    uploads, generates = asyncio.Semaphore(args.uploads), asyncio.Semaphore(args.parallel)
    videos = sorted(args.directory.glob("*.mp4"))
    await asyncio.gather(
        *(
            one_video(
                client, v, args.output, template, uploads, generates, args.poll, args.base_url
            )
            for v in videos
        )
    )
    return len(videos)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("-d", "--directory", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("-p", "--parallel", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls")
    args = parser.parse_args()
    started = time.perf_counter()
    written = asyncio.run(pipeline(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "videos": written,
                "wall_s": round(time.perf_counter() - started, 3),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
