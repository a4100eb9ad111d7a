"""Build the default model artifacts shipped in ocad-detectors-ml.

Usage::

    python -m ocad.train.build_defaults \\
        --config packages/ocad-train/configs/default.toml \\
        --dest packages/ocad-detectors-ml/src/ocad/detectors_ml/models

Trains everything the config asks for into a temporary model store
(:func:`ocad.train.train_all`), then copies each active artifact to
``DEST/<name>/`` as a plain artifact directory (``manifest.json`` + ``model.onnx``),
replacing an older one only after the new one is fully written and verified.
Fails if an artifact exceeds ``--max-kb`` (default 300 KB).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ocad.core import OcadError
from ocad.core.artifacts import LoadedArtifact, write_artifact

__all__ = ["build_defaults", "main"]

log = logging.getLogger("ocad.train")


def _install(art: LoadedArtifact, dest: Path) -> LoadedArtifact:
    """Copy ``art`` to ``dest/<name>`` atomically (stage, swap, drop the old one)."""
    target = dest / art.name
    staged = dest / f".{art.name}.staged-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    manifest = {k: v for k, v in art.manifest.items() if k not in ("files", "schema_version")}
    files = {role: (entry["path"], art.path / entry["path"]) for role, entry in art.manifest["files"].items()}
    write_artifact(staged, manifest, files)
    old = dest / f".{art.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
    from ocad.core.artifacts import load_artifact

    return load_artifact(target)


def build_defaults(config: str | os.PathLike[str], dest: str | os.PathLike[str], *, max_kb: float = 300.0,
                   progress: bool = True, multivariate: bool = True) -> list[LoadedArtifact]:
    """Train the models of ``config`` and install them into ``dest``; returns the installed artifacts."""
    from ._config import load_config
    from ._pipeline import train_all

    # The shipped core calibration is ocad-core's data/calibration.json (`ocad calibrate`), not a model.
    cfg = load_config(config).evolve(core_calibration=False)
    if not multivariate:
        cfg = cfg.evolve(multivariate={**cfg.multivariate, "enabled": False})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ocad-defaults-") as tmp:
        arts = train_all(cfg, Path(tmp) / "store", progress=progress)
        for a in arts:
            size = sum(int(e.get("bytes", 0)) for e in a.manifest["files"].values())
            size += (a.path / "manifest.json").stat().st_size
            if size > max_kb * 1024:
                raise OcadError(f"{a.name}: artifact is {size / 1024:.0f} KB > {max_kb:.0f} KB; use a smaller model")
        return [_install(a, dest) for a in arts]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ocad.train.build_defaults", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="training config (TOML)")
    p.add_argument("--dest", required=True, help="directory of the shipped artifacts")
    p.add_argument("--max-kb", type=float, default=300.0, help="largest allowed artifact (KB)")
    p.add_argument("--no-multivariate", action="store_true", help="forecasters only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        arts = build_defaults(args.config, args.dest, max_kb=args.max_kb, progress=not args.quiet,
                              multivariate=not args.no_multivariate)
    except OcadError as exc:
        print(f"build_defaults: error: {exc}", file=sys.stderr)
        return 1
    print(f"{'artifact':<28}{'KB':>7}{'test MAE':>12}{'naive MAE':>12}{'parity':>11}")
    for a in arts:
        kb = sum(int(e.get("bytes", 0)) for e in a.manifest["files"].values()) / 1024
        t = (a.manifest.get("metrics") or {}).get("test") or {}
        par = (a.manifest.get("parity") or {}).get("max_abs_diff")
        print(f"{a.name:<28}{kb:7.1f}{t.get('mae', float('nan')):12.4g}{t.get('naive_mae', float('nan')):12.4g}"
              f"{par if par is not None else float('nan'):11.3g}")
    print(f"built {len(arts)} artifact(s) into {args.dest} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
