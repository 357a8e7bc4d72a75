"""The container image, built here (``make image``: buildah, a Debian bookworm base made by mmdebstrap) and run
from its own filesystem: a worker and both sinks are started as ``chroot --userspec=10001:10001 <rootfs> csync …``
(the image's entrypoint and user; network = this host's loopback) against the test session's Kafka and Redis,
and Redis and ClickHouse must equal the simulator's truth exactly.

It also proves the install is a real one, not the source tree: the wheel is installed in ``/opt/csync`` with
every data file the code reads, ``DATA_DIR`` defaults outside the install folder, and a run writes nothing
outside the image's one volume (``/var/lib/classroomsync``) and ``/tmp``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csync.settings import Settings
from csync.stack import free_port
from tests.integration.e2e_harness import (
    DEFAULT_OPTIONS,
    E2E_CONFIG,
    ROOT,
    Pipeline,
    Proc,
    pipeline_settings,
    process_env,
    say,
    verify,
)

pytestmark = [pytest.mark.image, pytest.mark.kafka, pytest.mark.redis, pytest.mark.clickhouse]

VOLUME = "/var/lib/classroomsync"
USER = "10001:10001"
SITE = "/opt/csync/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    """``make image``'s image, mounted read-write as a buildah working container with /proc and /dev."""
    started = time.monotonic()
    build = subprocess.run(
        ["make", "-s", "image"], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    assert build.returncode == 0, (
        f"make image failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}"
    )
    image = build.stdout.strip().splitlines()[-1]
    say(f"make image: {image} in {time.monotonic() - started:.1f}s")
    container = _run("buildah", "from", "--pull-never", image)
    mount = Path(_run("buildah", "mount", container))
    try:
        _run("mount", "-t", "proc", "proc", str(mount / "proc"))
        _run("mount", "--rbind", "/dev", str(mount / "dev"))
        yield mount
    finally:
        for sub in ("dev", "proc"):
            subprocess.run(["umount", "-R", "-l", str(mount / sub)], check=False)
        subprocess.run(["buildah", "umount", container], check=False, capture_output=True)
        subprocess.run(["buildah", "rm", container], check=False, capture_output=True)


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stderr[-2000:]}"
    return result.stdout.strip()


def in_image(mount: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The command line that runs ``args`` inside the image's filesystem as the image's user."""
    clean = ["env", "-i", *(f"{k}={v}" for k, v in (env or {}).items())]
    return ["chroot", f"--userspec={USER}", str(mount), *clean, *args]


IMAGE_ENV = {"PATH": "/opt/csync/bin:/usr/bin:/bin", "HOME": VOLUME, "DATA_DIR": VOLUME}


def test_the_image_holds_an_installed_package_with_its_data(rootfs: Path) -> None:
    probe = (
        "import json, sinks.migrations as m, schemas, producers.collector as c, csync.settings as s;"
        "from importlib import resources as r;"
        "print(json.dumps({'default': s.default_data_dir(), 'data': s.Settings.from_env().data_dir,"
        "'openapi': c.OPENAPI_PATH.is_file(), 'schemas': schemas.__file__,"
        "'migrations': sorted(e.name for e in r.files('sinks.migrations').iterdir())}))"
    )
    # No DATA_DIR in the environment: the default must be a per-user folder, never the install folder.
    bare = {"PATH": "/opt/csync/bin:/usr/bin:/bin", "HOME": VOLUME}
    out = subprocess.run(
        in_image(rootfs, "python", "-c", probe, env=bare),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    facts = json.loads(out.stdout)
    assert facts["schemas"].startswith(SITE + "/"), "the image must run the installed wheel"
    assert facts["default"] == f"{VOLUME}/.local/state/classroomsync"
    assert not facts["default"].startswith("/opt/csync")
    assert facts["openapi"] is True
    wanted = sorted(p.name for p in (ROOT / "sinks" / "migrations").iterdir() if p.suffix == ".sql")
    assert wanted and set(wanted) <= set(facts["migrations"])
    # Every data file of the source packages (JSON Schemas, examples, OpenAPI, DDL) is in the wheel.
    packages = ("csync", "schemas", "producers", "streams", "sinks", "ops", "privacy", "demo")
    data = [p for pkg in packages for p in (ROOT / pkg).rglob("*")
            if p.is_file() and p.suffix in (".json", ".sql", ".yaml", ".csv")]  # fmt: skip
    missing = [str(p.relative_to(ROOT)) for p in data
               if not (rootfs / SITE.lstrip("/") / p.relative_to(ROOT)).is_file()]  # fmt: skip
    assert data and not missing, f"data files not shipped in the wheel: {missing}"
    # The entrypoint answers as the non-root user.
    helped = subprocess.run(in_image(rootfs, "csync", "--help", env=IMAGE_ENV),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert helped.returncode == 0 and "worker" in helped.stdout and "sink" in helped.stdout


class ImagePipeline(Pipeline):
    """The harness's pipeline, with the worker and both sinks run from the image's filesystem."""

    def __init__(self, settings: Settings, root: Path, mount: Path) -> None:
        super().__init__(settings, root)
        self.mount = mount
        # The ClickHouse sink owns a chDB folder inside the image's volume; the harness reads it from here.
        self.chdb_path = mount / VOLUME.lstrip("/") / "chdb-clickhouse-sink"

    def _image_env(self, **extra: Any) -> dict[str, str]:
        env = process_env(self.s, data_dir=VOLUME, **extra)
        keep = {k: v for k, v in env.items() if k in self.s.to_env() or k.lower() in extra}
        return {**keep, **IMAGE_ENV, "DATA_DIR": VOLUME, "PYTHONUNBUFFERED": "1"}

    def _spawn_in_image(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        self._starts += 1
        log = self.root / f"{name}-{self._starts}.log"
        popen = subprocess.Popen(
            in_image(self.mount, *args, env=env),
            stdin=subprocess.DEVNULL, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        return Proc(name, popen, log)

    def start_worker(self, index: int = 0) -> Proc:
        env = self._image_env(worker_web_port=free_port())
        proc = self._spawn_in_image(f"worker{index}", ["csync", "worker"], env)
        self.workers[index] = proc
        return proc

    def start_redis_sink(self, faults: str = "", **extra: Any) -> Proc:
        env = self._image_env(sink_redis_metrics_port=free_port(), **extra)
        self.redis_sink = self._spawn_in_image("sink-redis", ["csync", "sink", "redis"], env)
        return self.redis_sink

    def migrate_clickhouse(self) -> None:
        """``csync clickhouse migrate`` from the image, on the sink's chDB folder (once)."""
        if self._migrated:
            return
        env = self._image_env(clickhouse_url=f"chdb://{VOLUME}/chdb-clickhouse-sink")
        result = subprocess.run(
            in_image(self.mount, "csync", "clickhouse", "migrate", env=env),
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        self._migrated = True

    def start_clickhouse_sink(self, faults: str = "", **extra: Any) -> Proc:
        self.migrate_clickhouse()
        env = self._image_env(
            clickhouse_url=f"chdb://{VOLUME}/chdb-clickhouse-sink",
            sink_clickhouse_metrics_port=free_port(),
            usage_read_port=free_port(),
            **extra,
        )
        self.clickhouse_sink = self._spawn_in_image(
            "sink-clickhouse", ["csync", "sink", "clickhouse"], env
        )
        return self.clickhouse_sink


def _written_outside_volume(mount: Path, since: float) -> list[str]:
    skip = {mount / "proc", mount / "dev", mount / "tmp", mount / VOLUME.lstrip("/")}
    found: list[str] = []
    for top, dirs, files in os.walk(mount):
        dirs[:] = [d for d in dirs if Path(top, d) not in skip]
        for name in files:
            path = Path(top, name)
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime > since:
                    found.append(str(path.relative_to(mount)))
    return found


async def test_worker_and_sinks_from_the_image_equal_the_truth(
    rootfs: Path, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = pipeline_settings(make_settings())
    pipeline = ImagePipeline(settings, tmp_path / "pipeline", rootfs)
    since = time.time() - 1
    started = time.monotonic()
    try:
        await pipeline.create_topics()
        pipeline.start_all(workers=1)
        report, population = await pipeline.simulate(E2E_CONFIG, DEFAULT_OPTIONS)
        assert len(report.acked_events) == report.events_sent > 0
        await pipeline.wait_complete()
        verdict = await verify(pipeline, report, population)
    finally:
        pipeline.close()
    assert verdict.public_rows > 0 and verdict.suppressed_rows > 0
    for proc in pipeline.procs():
        assert proc.popen.args[0] == "chroot"  # type: ignore[index]
    assert _written_outside_volume(rootfs, since) == []
    say(f"image e2e: {time.monotonic() - started:.1f}s, {verdict}")
