"""Everything that talks to Gemini. The only package that imports google.genai."""

from gs_video_report.services.gemini.service import GeminiService, VideoRef

__all__ = ["GeminiService", "VideoRef"]
