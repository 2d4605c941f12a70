"""The container image's tooling, around podman: the tools themselves (installed from Debian's packages when
they are missing and we are root), the local base image (a debootstrap of Debian bookworm, for machines that
reach Debian's mirror and PyPI but no image registry), the image build, and the command that runs it.

Every podman call reads deploy/containers.conf through CONTAINERS_CONF, unless the caller set its own.
Failures are DeployError, with one line that says what went wrong and what to do. A failed build never
replaces a good image: podman tags only what it finished, and the base image is imported only once its
root file system is complete.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from deploy.runtime import load_runtime

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
CONTAINERS_CONF = ROOT / "deploy" / "containers.conf"
DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"  # deploy/Containerfile's `ARG BASE`
LOCAL_BASE = "localhost/tabular-deploy-base:bookworm"
IMAGE = "localhost/tabular-deploy:latest"
STAGED_MODELS = ".image-models"  # MODELS= copied into the build context (one build at a time per tree)
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")  # python3-venv: the build stage's `python3 -m venv`
PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # command → Debian package
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What Debian's own slim images leave out; the dpkg rules keep later installs in derived images slim too.
SLIM_DPKG_RULES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""

Log = Callable[[str], None]


def say(line: str) -> None:
    print(line, flush=True)


class DeployError(Exception):
    """A deployment step that cannot go on; the message is one line saying why and what to do."""


# -- the tools -----------------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def is_root() -> bool:
    return os.geteuid() == 0


def missing_tools(commands=("podman", "runc")) -> list[str]:
    return [c for c in commands if shutil.which(c) is None]


def ensure_tools(commands=("podman", "runc"), log: Log = say) -> None:
    """Install the missing commands from Debian's packages (as root), or say how to."""
    missing = missing_tools(commands)
    if not missing:
        return
    packages = [PACKAGES[c] for c in missing]
    if not is_root() or shutil.which("apt-get") is None:
        raise DeployError(
            f"{', '.join(missing)} not found: install {' '.join(packages)} "
            f"(Debian: apt-get install {' '.join(packages)}), or run this as root on Debian"
        )
    log(f"installing {' '.join(packages)} from Debian's packages (apt-get) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DeployError(f"{' '.join(command)} failed: {last[0]}")
    still = missing_tools(commands)
    if still:
        raise DeployError(f"{', '.join(still)} still not found after apt-get install {' '.join(packages)}")


def podman(*args: str, capture: bool = True, check: bool = True, timeout: float | None = None, **kwargs):
    """`podman ARGS` with the project's containers.conf; DeployError with podman's last line on failure."""
    if shutil.which("podman") is None:
        raise DeployError("podman not found: install podman and runc (Debian: apt-get install podman runc)")
    result = subprocess.run(
        ["podman", *args],
        env=environment(),
        capture_output=capture,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if check and result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines() if capture else []
        raise DeployError(
            f"podman {args[0]} failed (exit {result.returncode})" + (f": {lines[-1]}" if lines else "")
        )
    return result


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def podman_unusable() -> str:
    """Why podman cannot run containers here ('' when it can): missing, or `podman info` fails."""
    if missing_tools():
        return f"{', '.join(missing_tools())} not found (make test installs podman and runc as root)"
    result = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines() or ["no output"]
        return f"podman info failed: {lines[-1]}"
    return ""


# -- the local base image ------------------------------------------------------------------------------------
def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 `URIs:` or one-line `deb URI SUITE`), for SUITE."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources", ""):
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):  # deb822: one stanza per paragraph
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if fields.get("Enabled", "yes").strip() == "no" or "deb" not in fields.get("Types", "").split():
                continue
            if SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
        for line in text.splitlines():  # one-line format: deb [options] URI SUITE COMPONENTS
            words = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return DEBIAN_MIRROR


def build_base(name: str = LOCAL_BASE, mirror: str | None = None, log: Log = say) -> bool:
    """Build the local base image from Debian's packages unless `name` exists; True when it was built."""
    ensure_tools(("podman", "runc", "debootstrap"), log)
    if image_exists(name):
        log(f"base image {name} exists (podman rmi {name} to rebuild it)")
        return False
    if not is_root():
        raise DeployError("building the base image needs root (debootstrap): run it as root")
    mirror = mirror or debian_mirror()
    log(f"building {name}: debootstrap {SUITE} (minbase, {' '.join(BASE_PACKAGES)}) from {mirror} ...")
    with tempfile.TemporaryDirectory(prefix="base-image-", dir="/var/tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
            raise DeployError(f"debootstrap failed (exit {result.returncode}): {lines[-1]}")
        slim(rootfs)
        changes = [
            "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV=LANG=C.UTF-8",
            'CMD=["python3"]',
            f'LABEL org.opencontainers.image.description="Debian {SUITE} minbase with '
            f'{" ".join(BASE_PACKAGES)}, debootstrapped from {mirror}"',
        ]
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE
        )
        try:
            podman("import", *(f"--change={c}" for c in changes), "-", name, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
    log(f"built {name}")
    return True


def slim(rootfs: Path) -> None:
    """Leave out apt's caches and lists, documentation (not the copyright files), manuals and translations."""
    for relative in (
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        for entry in (rootfs / relative).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for entry in (rootfs / "usr/share/doc").glob("*/*"):
        if entry.name != "copyright":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG_RULES)


def choose_base(requested: str | None, log: Log = say) -> str | None:
    """The base to build on: `requested`; else the local base if built; else the Containerfile's default
    (None) if it is here or can be pulled; else the local base, built now."""
    if requested:
        return requested
    if image_exists(LOCAL_BASE):
        return LOCAL_BASE
    if image_exists(DEFAULT_BASE) or podman("pull", "--quiet", DEFAULT_BASE, check=False).returncode == 0:
        return None
    log(f"cannot pull {DEFAULT_BASE} (no image registry reachable?): building a base from Debian's packages")
    build_base(LOCAL_BASE, log=log)
    return LOCAL_BASE


# -- the image -----------------------------------------------------------------------------------------------
def pip_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip is told to trust (PIP_CERT or pip.conf's `cert`), if any: the build
    stage needs it where PyPI is reached through an intercepting proxy."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(variable) and Path(os.environ[variable]).is_file():
            return Path(os.environ[variable])
    config = configparser.ConfigParser()
    config.read(
        [
            "/etc/pip.conf",
            "/etc/xdg/pip/pip.conf",
            Path.home() / ".pip/pip.conf",
            Path.home() / ".config/pip/pip.conf",
            os.environ.get("PIP_CONFIG_FILE", ""),
        ]
    )
    cert = config.get("global", "cert", fallback="")
    return Path(cert) if cert and Path(cert).is_file() else None


def model_directories(repository: Path) -> list[Path]:
    """The model directories the server would read: visible subdirectories."""
    return sorted(p for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith("."))


def build_image(
    tag: str = IMAGE,
    *,
    base: str | None = None,
    variant: str = "runtime",
    models: Path | None = None,
    log: Log = say,
    quiet: bool = False,
) -> str:
    """Build deploy/Containerfile from the project's root; returns the image's id."""
    from deploy.requirements import VARIANTS

    if variant not in VARIANTS:
        raise DeployError(f"VARIANT must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if models is not None:
        models = Path(models)
        if not models.is_dir() or not any((d / "config.pbtxt").is_file() for d in model_directories(models)):
            raise DeployError(
                f"{models} holds no model (a directory with config.pbtxt): run `make all` first"
            )
    ensure_tools(log=log)
    base = choose_base(base, log=log)
    runtime = load_runtime()
    build_args = runtime.build_args()
    build_args.update({"BASE": base} if base else {})
    build_args.update({"VARIANT": variant} if variant != "runtime" else {})  # the Containerfile's default
    command = ["build", "--format", "docker", "--network", "host", "--file", str(CONTAINERFILE), "--tag", tag]
    command += [f"--build-arg={k}={v}" for k, v in build_args.items()]
    ca = pip_ca_bundle()
    if ca:
        command.append(f"--secret=id=pip-ca,src={ca}")
    staged = None
    try:
        if models is not None:  # the Containerfile copies MODELS from inside the build context
            staged = ROOT / STAGED_MODELS
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir()
            for directory in model_directories(models):
                shutil.copytree(directory, staged / directory.name)
            command.append(f"--build-arg=MODELS={staged.name}")
        log(
            f"building {tag} on {base or DEFAULT_BASE} ({variant}"
            + (f", models from {models})" if models else ")")
        )
        if quiet:
            podman(*command, "--quiet", str(ROOT))
        else:
            podman(*command, str(ROOT), capture=False)
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
    return podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


# -- running it ----------------------------------------------------------------------------------------------
def unreadable(repository: Path) -> str:
    """The first path in the repository that others cannot read ('' when none), with its mode. The
    container's user reads through these bits: rootless podman maps it to a subordinate uid on the host,
    and under root it is uid 1000, rarely the files' owner."""
    for top in model_directories(repository):
        for path in [top, *top.rglob("*")]:
            st = path.stat()
            need = 0o5 if path.is_dir() else 0o4
            if st.st_mode & need != need:
                return f"{path} (mode {st.st_mode & 0o777:o})"
    return ""


def run_command(
    image: str,
    repository: Path | None,
    *,
    host: str = "127.0.0.1",
    http_port: int,
    grpc_port: int,
    name: str | None = None,
    detach: bool = False,
    remove: bool = True,
    server_args: tuple[str, ...] = (),
    payload_log: Path | None = None,
) -> list[str]:
    """`podman run` as users should run the image: host network, read-only root file system, the
    unprivileged user, the repository mounted read-only (None: the models baked into the image).
    `payload_log`, a file on the host: its directory is mounted writable at PAYLOAD_LOGS (the root file
    system is read-only) and the server writes the file there."""
    runtime = load_runtime()
    command = ["run", "--network", "host", "--read-only", "--user", f"{runtime.user}:{runtime.user}"]
    command += ["--rm"] if remove else []
    command += ["--detach"] if detach else []
    command += ["--name", name] if name else []
    if repository is not None:
        command += ["--volume", f"{Path(repository).resolve()}:{runtime.repository}:ro"]
    logging = ()
    if payload_log is not None:
        command += ["--volume", f"{Path(payload_log).resolve().parent}:{PAYLOAD_LOGS}"]
        logging = ("--payload-log", f"{PAYLOAD_LOGS}/{Path(payload_log).name}")
    command += [image, "--host", host, "--port", str(http_port), "--grpc-port", str(grpc_port)]
    return [*command, *logging, *server_args]


PAYLOAD_LOGS = "/mnt/payload-logs"  # in the container: the writable mount of the payload log's directory


def check_payload_log(payload_log: Path) -> None:
    """A payload log file whose directory the container's user can write, or DeployError saying why not."""
    runtime = load_runtime()
    directory = Path(payload_log).resolve().parent
    if not directory.is_dir():
        raise DeployError(f"{directory} is not a directory: create it for the payload log")
    st = directory.stat()
    if not (st.st_uid == runtime.user and st.st_mode & 0o300 == 0o300) and st.st_mode & 0o003 != 0o003:
        user = runtime.user
        raise DeployError(
            f"{directory} is not writable by the container's user {user}: chown {user} {directory}"
        )


def check_repository(repository: Path) -> None:
    """A repository the container's user can serve, or DeployError saying why not."""
    runtime = load_runtime()
    if not Path(repository).is_dir():
        raise DeployError(f"{repository} is not a directory: run `make all` first, or pass REPOSITORY=")
    problem = unreadable(Path(repository))
    if problem:
        raise DeployError(
            f"{problem} is not readable by the container's user {runtime.user}: chmod -R a+rX {repository}"
        )
