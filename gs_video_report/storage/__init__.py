"""State: one SQLite database under GS_VIDEOREPORT_HOME. The task table is the checkpoint."""

from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow, TaskStage
from gs_video_report.storage.db import open_db

__all__ = ["CheckpointManager", "TaskRow", "TaskStage", "open_db"]
