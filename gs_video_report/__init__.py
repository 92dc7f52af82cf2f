"""gs_videoreport: teaching videos to lesson plans and transcripts with Gemini."""

__version__ = "0.3.0"
