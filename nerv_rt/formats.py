"""File-format markers, the torch-free readers of our JSON files (checkpoint config, export manifest),
and the one atomic-write helper every output goes through."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, NervError

# Version 2: the model config's dit.prediction (a v-prediction DiT). This nerv-rt reads version 1 files as eps
# models; a nerv-rt that reads only version 1 refuses version 2 with "upgrade nerv-rt" instead of running a
# v-prediction DiT as if it predicted eps.
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "nerv-rt/checkpoint", 2
EXPORT_FORMAT, EXPORT_VERSION = "nerv-rt/export", 2
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "model.safetensors", "manifest.json"


def torch_file_format(path: Path) -> str | None:
    """By its first bytes, the format torch.save wrote `path` in: "zip" (its default since torch 1.6) or "pickle"
    (the legacy format); None for a file torch.save did not write. Read without torch."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return "zip" if magic == b"PK\x03\x04" else "pickle" if magic[:1] == b"\x80" else None


def read_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Parse `path` and check its format marker and version; CheckpointError says what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CheckpointError(f"{path}: not a nerv-rt {what} (no format marker {fmt!r})")
    check_version(data.get("version"), version, path)
    return data


def check_version(found: Any, supported: int, path: Path | str) -> None:
    if not isinstance(found, int) or found > supported:
        raise CheckpointError(f"{path}: format version {found} is newer than this nerv-rt reads ({supported}); "
                              "upgrade nerv-rt")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_checkpoint(path: Path) -> str:
    """Hash of a checkpoint: the .pt file, or a save_pretrained folder's config and weights (by name), so
    that exported graphs written beside them do not change it."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        h.update(name.encode())
        h.update(sha256_file(path / name).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class FolderOutput:
    """A kind of output folder. An existing folder at the output path is replaced only when it is empty or `holds`
    says it is an earlier output of this kind: never a folder of a user's other files."""
    what: str | None  # "an earlier export", for the error message; None: only an empty folder is replaced
    holds: Callable[[Path], bool] = lambda folder: False


NEW_FOLDER = FolderOutput(None)


def check_replaceable(path: Path, folder: FolderOutput | None) -> None:
    """Refuse to write over what the output would destroy: a folder with a file, a file with a folder, a non-empty
    folder that is not an earlier output of this kind, a symbolic link to a folder, the current folder or one above
    it. A file replaces a file, as other tools' -o does."""
    if not (path.exists() or path.is_symlink()):
        return
    if folder is None:
        if path.is_dir():
            raise NervError(f"{path} is a folder; give a file name for the output")
        return
    if path.is_symlink():
        raise NervError(f"{path} is a symbolic link; give the folder it points to, or another output path")
    if not path.is_dir():
        raise NervError(f"{path} exists and is not a folder; remove it or choose another output path")
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise NervError(f"{path} is the current folder or holds it; choose another output path")
    if any(path.iterdir()) and not folder.holds(path):
        kind = f" or {folder.what}" if folder.what else ""
        raise NervError(f"{path} exists and is not empty{kind}; remove it or choose another output path")


def check_not_input(out: Path, source: Path) -> None:
    """Refuse an output that is the command's input file (a file replaces a file, so it would be lost)."""
    if out.exists() and source.exists() and os.path.samefile(out, source):
        raise NervError(f"{out} is the input {source}; choose another output path")


def named_path(path: str | Path) -> Path:
    """`path`, or where it ends in "." / ".." (no name of its own), the folder it means: outputs go beside their name."""
    path = Path(path)
    return path.resolve() if path.name in ("", ".", "..") else path


@contextlib.contextmanager
def atomic_path(path: str | Path, folder: FolderOutput | None = None) -> Iterator[Path]:
    """A temporary file (or, given the kind of `folder`, a folder) beside `path` to write into; when the block
    completes it replaces `path` (an old folder is removed only after the new one is in place), and when the block
    fails it is removed: readers never see a half-written `path`. What is at `path` already is checked first
    (check_replaceable). The result gets the permissions a plain open() or mkdir() would give, not mkstemp's 0600 /
    mkdtemp's 0700."""
    path = named_path(path)
    check_replaceable(path, folder)
    parent = path.parent if str(path.parent) else Path(".")
    if folder:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.tmp-"))
    else:
        fd, name = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if folder else 0o666) & ~umask)
        if folder and path.exists():
            check_replaceable(path, folder)  # again: what is there may have changed while the output was made
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if folder else tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
