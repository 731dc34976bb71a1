"""Write a folder as a whole: into a temporary sibling, then renamed into place.

Checkpoints and data sets are folders of several files. Writing them in
place and failing halfway would leave a folder that looks complete but
loads wrong, so :func:`replace_folder` builds the new folder beside the
old one and swaps it in only once every file is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def apply_default_permissions(folder: Path) -> None:
    """Give ``folder`` and its direct children the modes that ``mkdir`` and ``open`` give under the current umask.

    ``tempfile.mkdtemp`` creates 0700 folders and some writers create 0600 files.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.iterdir():
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def replace_folder(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Create or replace ``folder`` with what ``write(staging)`` puts into an empty staging folder.

    The staging folder is a temporary sibling of ``folder``, so the final
    renames stay on one file system. When ``write`` raises, ``folder`` is
    left as it was and the staging folder is removed.

    Returns:
        The absolute path of ``folder``.
    """
    folder = Path(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        apply_default_permissions(staging)
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, retired / folder.name)
            os.replace(staging, folder)
            shutil.rmtree(retired)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder
