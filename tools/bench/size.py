"""Size of the built layer (and functions): unzipped, zipped as SAM would upload them, and what is in it."""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

# Provided by the Lambda runtime; bundling them would only add size and shadow the runtime's copy.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")
MB = 1024 * 1024


def tree_size(root: Path) -> tuple[int, int]:
    total = files = 0
    for folder, _, names in os.walk(root):
        for name in names:
            total += (Path(folder) / name).stat().st_size
            files += 1
    return total, files


def zipped_size(root: Path, target: Path) -> int:
    """Deflate every file, paths relative to `root` (the layer's zip holds `python/...`)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(folder) / name
                archive.write(path, path.relative_to(root))
    return target.stat().st_size


def by_package(python_dir: Path) -> dict[str, float]:
    sizes: defaultdict[str, int] = defaultdict(int)
    for entry in python_dir.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith((".dist-info", ".data")) else entry.name
        sizes[name.removesuffix(".py")] += tree_size(entry)[0] if entry.is_dir() else entry.stat().st_size
    return {k: v / MB for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}


def measure(layer_dir: Path, function_dirs: dict[str, Path], work: Path) -> dict[str, Any]:
    """`layer_dir` is the layer artifact (holding python/), as `make build` leaves it (precompiled)."""
    unzipped, files = tree_size(layer_dir)
    python_dir = layer_dir / "python"
    functions = {}
    for name, path in function_dirs.items():
        size, count = tree_size(path)
        functions[name] = {
            "unzipped_bytes": size,
            "files": count,
            "zipped_bytes": zipped_size(path, work / f"{name}.zip"),
        }
    return {
        "layer_unzipped_mb": unzipped / MB,
        "layer_zipped_mb": zipped_size(layer_dir, work / "layer.zip") / MB,
        "layer_files": files,
        "runtime_packages_bundled": [name for name in RUNTIME_PACKAGES if (python_dir / name).exists()],
        "pyc_files_in_build": sum(1 for _ in python_dir.rglob("*.pyc")),
        "by_package_mb": by_package(python_dir),
        "functions": functions,
    }
