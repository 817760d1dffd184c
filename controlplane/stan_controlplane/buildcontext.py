"""The Dockerfile's build context: the files of the project that ship in Stan's image.

``.dockerignore`` decides, for the Dockerfile and for ``images.stan_image``
alike, so both build from the same files, and the image's cache key digests
exactly those.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def shipped_files(root: Path) -> list[Path]:
    """The files of the build context at ``root``, relative to it, by Docker's rules: a pattern matches a
    path or any of its parents, the last matching pattern decides, ``!`` keeps. Directories no ``!``
    pattern reaches into are not walked (``.git``, ``.venv``)."""
    rules = [
        (line.startswith("!"), line.lstrip("!").strip("/"))
        for line in (line.strip() for line in (root / ".dockerignore").read_text().splitlines())
        if line and not line.startswith("#")
    ]
    matchers = [(kept, _glob_regex(pattern), pattern) for kept, pattern in rules]

    def ignored(relative: str) -> bool:
        parents = [relative] + [relative.rsplit("/", depth)[0] for depth in range(1, relative.count("/") + 1)]
        verdict = False
        for kept, regex, _ in matchers:
            if any(regex.fullmatch(path) for path in parents):
                verdict = not kept
        return verdict

    def may_keep_below(relative: str) -> bool:
        return any(
            kept and (pattern.startswith(relative + "/") or pattern[:1] in "*?[") for kept, _, pattern in matchers
        )

    files: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        base = Path(directory).relative_to(root)
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not ignored((base / name).as_posix()) or may_keep_below((base / name).as_posix())
        )
        files += [base / name for name in names if not ignored((base / name).as_posix())]
    return sorted(files)


def snapshot(root: Path, destination: Path) -> str:
    """Copy the build context at ``root`` into ``destination`` and return a digest of the copy: each file's
    path, exec bits and content. The image is built from the copy, so the digest names what the image
    holds even if the checkout changes during the build."""
    summary = hashlib.sha256()
    for relative in shipped_files(root):
        content = (root / relative).read_bytes()
        mode = (root / relative).stat().st_mode & 0o777
        copy = destination / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(content)
        copy.chmod(mode)
        summary.update(f"{relative}\0{mode & 0o111:o}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    return summary.hexdigest()


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Docker's ``.dockerignore`` glob: ``**`` crosses directories, ``*`` and ``?`` do not."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))
