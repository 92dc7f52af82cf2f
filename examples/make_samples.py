"""Regenerate the bundled sample videos in examples/videos/ (needs numpy; dev extra).

Tiny on purpose (160x90, 5 fps, low-bitrate audio): they exist so the simulator
demo and the tests have real, probe-able video files. Run: python examples/make_samples.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import av
import numpy as np

SAMPLES = {
    "intro_to_fractions.mp4": (45, "libx264", "aac", (40, 90, 200)),
    "photosynthesis_basics.mp4": (30, "libx264", "aac", (30, 160, 60)),
    "color_theory_week1.webm": (20, "libvpx-vp9", "libopus", (200, 80, 40)),
}


def make(path: Path, seconds: int, vcodec: str, acodec: str, color: tuple[int, int, int]) -> None:
    fps, width, height, rate = 5, 160, 90, 16000
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"g": str(fps * 2)}  # a keyframe every 2 s keeps seeks cheap
        if vcodec == "libx264":
            video.options |= {"crf": "38", "preset": "veryslow"}
        else:
            video.options |= {"crf": "50", "b:v": "0"}
        audio = out.add_stream(acodec, rate=rate if acodec == "aac" else 48000)
        audio.layout = "mono"
        audio.bit_rate = 12000
        for i in range(seconds * fps):
            frame = np.zeros((height, width, 3), dtype=np.uint8)
            frame[:] = color
            x = (i * 4) % (width - 20)
            frame[35:55, x : x + 20] = (255, 255, 255)  # a moving "pointer"
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        sample_rate = audio.codec_context.sample_rate
        n, t = 960, 0
        while t < seconds * sample_rate:
            tone = 220 + 110 * math.sin(t / sample_rate)
            samples = 0.1 * np.sin(2 * np.pi * tone * np.arange(t, t + n) / sample_rate)
            frame = av.AudioFrame.from_ndarray(
                samples.astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = sample_rate, t
            for packet in audio.encode(frame):
                out.mux(packet)
            t += n
        for packet in audio.encode():
            out.mux(packet)


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "videos"
    target.mkdir(parents=True, exist_ok=True)
    for name, (seconds, vcodec, acodec, color) in SAMPLES.items():
        make(target / name, seconds, vcodec, acodec, color)
        print(f"{target / name}: {(target / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
