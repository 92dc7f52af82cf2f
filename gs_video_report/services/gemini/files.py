"""What the Files API hands back, read for the rest of the tool, and the video as the SDK
reads it during an upload."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.genai import types

from gs_video_report.errors import InputError
from gs_video_report.models import UploadedFile

ProgressCallback = Callable[[int, int], None]


class VideoReader(io.RawIOBase):
    """The video as the SDK reads it: counts bytes for upload progress, and makes a file
    changing under the upload an ``InputError`` (cut short, the SDK sends empty chunks
    until the deadline; grown, more bytes than it announced)."""

    def __init__(
        self, raw: io.BufferedReader, path: Path, total: int, callback: ProgressCallback | None
    ) -> None:
        self._raw = raw
        self._path = path
        self._total = total
        self._callback = callback
        self._done = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        try:
            count = self._raw.readinto(buffer)
        except OSError as exc:
            raise InputError(
                f"cannot read the video during its upload: {self._path} ({exc.strerror or exc})"
            ) from exc
        self._done += count
        shorter = count == 0 and len(buffer) > 0 and self._done < self._total
        if shorter or self._done > self._total:
            how = "it got shorter" if shorter else "it grew"
            raise InputError(
                f"the video changed during its upload ({how}); plan again: {self._path}"
            )
        if self._callback is not None:
            self._callback(self._done, self._total)
        return count


def uploaded(file: types.File) -> UploadedFile:
    state = file.state.name if file.state is not None else "STATE_UNSPECIFIED"
    error = None
    if file.error is not None:
        error = " ".join(str(file.error.message or f"code {file.error.code}").split())
    return UploadedFile(
        name=file.name or "",
        uri=file.uri or "",
        mime_type=file.mime_type or "",
        state=state,
        size_bytes=file.size_bytes,
        expires_at=file.expiration_time,
        error=error,
    )
