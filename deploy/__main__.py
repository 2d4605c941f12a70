"""`python -m deploy`: the container image's commands (the Makefile's base-image, image and run-image).

    python -m deploy tools                     podman, runc and debootstrap from Debian's packages (as root)
    python -m deploy base-image                the local base image (debootstrap of Debian bookworm), once
    python -m deploy image [--base B] [--variant batch] [--models DIR] [--tag T]
    python -m deploy run-image [--image T] [--repository DIR] [--host H] [--port P] [--grpc-port G]
                               [--payload-log FILE] [-- ARGS]
    python -m deploy prepare-tests             as root: the tools and the base image the image tests need
    python -m deploy validate                  the Kubernetes manifests against their schemas (dev extra)

Standard library only (but `validate`): it runs with any python3, no virtual environment needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deploy import podman as tools


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tools", help="install podman, runc and debootstrap when missing (root, Debian)")
    base = commands.add_parser("base-image", help="build the local base image unless it exists")
    base.add_argument("--name", default=tools.LOCAL_BASE)
    base.add_argument("--mirror", help="Debian mirror (default: the one this machine's apt uses)")
    image = commands.add_parser("image", help="build deploy/Containerfile")
    image.add_argument("--tag", default=tools.IMAGE)
    image.add_argument(
        "--base", help=f"base image (default: {tools.LOCAL_BASE} if built, else {tools.DEFAULT_BASE})"
    )
    image.add_argument("--variant", default="runtime", help="runtime, or batch (adds pyarrow)")
    image.add_argument("--models", type=Path, help="a model repository to bake into /mnt/models")
    run = commands.add_parser("run-image", help="run the image on the host network, repository read-only")
    run.add_argument("--image", default=tools.IMAGE)
    run.add_argument(
        "--repository", type=Path, default=Path("models"), help="mounted at /mnt/models; '' for baked models"
    )
    run.add_argument("--host", default="127.0.0.1", help="bind address on the host network")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--grpc-port", type=int, default=8001)
    run.add_argument(
        "--payload-log",
        type=Path,
        help="a file on the host for the server's payload log (its directory is mounted writable)",
    )
    run.add_argument("server_args", nargs="*", help="more server flags, after --")
    commands.add_parser(
        "prepare-tests", help="as root: install the tools and build the base image if missing"
    )
    commands.add_parser("validate", help="validate deploy/kubernetes/*.yaml against their schemas")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "tools":
            tools.ensure_tools(("podman", "runc", "debootstrap"))
        elif args.command == "base-image":
            tools.build_base(args.name, mirror=args.mirror)
        elif args.command == "image":
            tools.build_image(args.tag, base=args.base, variant=args.variant, models=args.models)
            print(f"built {args.tag}")
        elif args.command == "run-image":
            return run_image(args)
        elif args.command == "prepare-tests":
            return prepare_tests()
        elif args.command == "validate":
            return validate()
    except tools.DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_image(args) -> int:
    repository = args.repository if str(args.repository) not in ("", ".") else None
    if repository is not None:
        tools.check_repository(repository)
    if args.payload_log is not None:
        tools.check_payload_log(args.payload_log)
    tools.ensure_tools()
    if not tools.image_exists(args.image):
        raise tools.DeployError(f"image {args.image} not found: run `make image` first")
    command = tools.run_command(
        args.image,
        repository,
        host=args.host,
        http_port=args.port,
        grpc_port=args.grpc_port,
        server_args=tuple(args.server_args),
        payload_log=args.payload_log,
    )
    print("podman " + " ".join(command), flush=True)
    os.execvpe("podman", ["podman", *command], tools.environment())  # Ctrl-C reaches the container


def validate() -> int:
    try:
        from deploy.manifests import validate_all

        return 1 if validate_all() else 0
    except ImportError as exc:
        raise tools.DeployError(
            f"validate needs PyYAML, jsonschema and kubernetes-validate (make install): {exc}"
        ) from None


def prepare_tests() -> int:
    """What tests/deploy needs, where it can be had: as root, the tools and the base image (the tests build
    the image itself, from the tree under test); otherwise a line saying the image tests will skip."""
    if not tools.is_root():
        reason = tools.podman_unusable()
        if reason:
            print(f"deploy: the image tests will skip: {reason}")
        return 0
    tools.ensure_tools(("podman", "runc", "debootstrap"))
    tools.choose_base(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
