"""The studio's temporary files: where they go, and a janitor that keeps them from piling up.

Owns: the data dir's own temp folder (`temp_dir`: exports being zipped, code files being downloaded),
`sweep` (remove files older than STUDIO_TEMP_MAX_AGE, then the oldest until the folders fit in
STUDIO_UPLOAD_CACHE, then empty folders) and `Janitor`, which sweeps the studio's temp folder and Gradio's
upload cache once at start and then on a schedule, in a daemon thread.
Ignores: which files a download still needs (anything younger than the age limit is kept unless the
cap needs the room; a file removed under a pending download fails that download, never the server).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from studio.errors import reason

log = logging.getLogger(__name__)

EMPTY_FOLDER_AGE_S = 60.0
SWEEP_EVERY_S = 600.0  # at most; a shorter age limit sweeps every quarter of it


@dataclass(frozen=True)
class Swept:
    removed: int  # files removed
    kept_bytes: int  # bytes left in the folders


def sweep(folders: list[Path], *, max_age_s: float, cap_bytes: int, now: float | None = None) -> Swept:
    """Remove files older than `max_age_s`, then the oldest until the rest take at most `cap_bytes`,
    then empty folders; a file that cannot be removed (in use, gone meanwhile) is skipped."""
    now = time.time() if now is None else now
    files: list[tuple[float, int, Path]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    stat = path.stat()
                    files.append((stat.st_mtime, stat.st_size, path))
            except OSError:
                continue
    files.sort()  # oldest first
    total = sum(size for _, size, _ in files)
    removed = 0
    for mtime, size, path in files:
        if now - mtime <= max_age_s and total <= cap_bytes:
            break  # the rest are younger, and everything fits
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the temporary file %s: %s", path.name, reason(exc))
            continue
        total -= size
        removed += 1
    for folder in folders:
        _drop_empty(folder, now)
    if removed:
        log.info("removed %d temporary file(s); %d bytes left", removed, total)
    return Swept(removed, total)


def _drop_empty(folder: Path, now: float) -> None:
    """Remove empty folders below `folder` that are over a minute old (a younger one may be an upload's,
    its file still to come)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink() and now - path.stat().st_mtime > EMPTY_FOLDER_AGE_S:
                path.rmdir()  # only when empty


class Janitor:
    """Sweeps `folders` now and then every min(SWEEP_EVERY_S, max_age_s / 4) seconds until `stop()`."""

    def __init__(self, folders: list[Path], *, max_age_s: float, cap_bytes: int) -> None:
        self.folders, self.max_age_s, self.cap_bytes = folders, max_age_s, cap_bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Swept:
        """Sweep once now (the start-up clean), then keep sweeping in the background."""
        first = self.sweep()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="studio-temp-janitor", daemon=True)
            self._thread.start()
        return first

    def sweep(self) -> Swept:
        return sweep(self.folders, max_age_s=self.max_age_s, cap_bytes=self.cap_bytes)

    def _run(self) -> None:
        every = min(SWEEP_EVERY_S, max(1.0, self.max_age_s / 4))
        while not self._stop.wait(every):
            try:
                self.sweep()
            except Exception as exc:  # a disk hiccup: the next sweep tries again
                log.warning("the temporary files sweep failed: %s", reason(exc))

    def stop(self) -> None:
        self._stop.set()
