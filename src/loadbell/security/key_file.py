"""Where the secret key comes from: ``LOADBELL_SECRET_KEY``, or the key file.

With ``LOADBELL_SECRET_KEY`` unset and no key file, a new key is made in memory. The file is
written only once the database has taken that key (``services/secret_keys.py``): a process
whose key the database refuses leaves no file behind, so the next start in that folder does
not find a wrong key waiting for it.
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from loadbell.security.secretbox import SecretKeyError, parse_keys

MODE = 0o600  # the key file is readable by its owner only


@dataclass(frozen=True)
class KeySource:
    keys: list[str]  # newest first
    origin: str  # for messages: where the keys came from
    new_file: Path | None = None  # a key made now, to be written here once it is accepted

    @property
    def generated(self) -> bool:
        return self.new_file is not None


def resolve(secret_key: str | None, key_file: Path) -> KeySource:
    """The keys this process has. Never writes anything."""
    if secret_key and parse_keys(secret_key):
        return KeySource(parse_keys(secret_key), "LOADBELL_SECRET_KEY")
    where = str(key_file.resolve())
    try:
        text = key_file.read_text()
    except FileNotFoundError:
        material = base64.urlsafe_b64encode(os.urandom(32)).decode()
        return KeySource([material], f"a new key ({where} does not exist)", key_file)
    keys = parse_keys(text)
    if not keys:
        raise SecretKeyError(f"the key file {where} is empty; delete it or put the key back")
    return KeySource(keys, f"the key file {where}")


def write_new(path: Path, material: str) -> bool:
    """Create the key file with ``material``, mode 0600; False when it exists already
    (another process of the same folder made it first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(material + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return True


def exists(path: Path) -> bool:
    return path.exists()


def remove(path: Path) -> None:
    """Take back a key file this process wrote (its key was not stored after all)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
