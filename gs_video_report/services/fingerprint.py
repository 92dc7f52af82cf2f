"""A fast content fingerprint for the skip-existing ledger.

Size plus a hash of three 64 KiB samples (start, middle, end): the same video under
another name or folder has the same fingerprint; a re-encoded or edited one does not.
A few hundred KiB are read whatever the file size, never the whole gigabyte.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gs_video_report.errors import InputError

SAMPLE_BYTES = 64 * 1024


def content_fingerprint(path: Path) -> str:
    try:
        size = path.stat().st_size
        digest = hashlib.blake2b(str(size).encode(), digest_size=16)
        with open(path, "rb") as handle:
            if size <= 3 * SAMPLE_BYTES:
                digest.update(handle.read())
            else:
                for offset in (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES):
                    handle.seek(offset)
                    digest.update(handle.read(SAMPLE_BYTES))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    return f"{size}-{digest.hexdigest()}"


def url_fingerprint(identity: str) -> str:
    """For YouTube sources the canonical URL is the content identity."""
    return "url-" + hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
