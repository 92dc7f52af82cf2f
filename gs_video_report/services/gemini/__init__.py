"""Everything that talks to Gemini. The only package that imports google.genai."""

from gs_video_report.services.gemini.keypool import KeyPool, KeyState, NoUsableKey
from gs_video_report.services.gemini.service import GeminiService, VideoRef

__all__ = ["GeminiService", "KeyPool", "KeyState", "NoUsableKey", "VideoRef"]
