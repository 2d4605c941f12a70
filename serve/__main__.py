"""Command line: `python -m serve serve` (the HTTP and gRPC server, serve/server.py) and `python -m serve
predict` (batch prediction from CSV or Parquet, serve/predict/). Every server flag also reads an
environment variable, SERVE_<FLAG>. Parsing only: what each command does is in those modules."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from contract.errors import ContractError
from contract.tables import delimiter_from
from serve.batching import BatchingConfig


def env(name: str, default):
    value = os.environ.get(f"SERVE_{name.upper()}")
    return default if value is None else type(default)(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser(
        "serve", help="serve a model repository over HTTP and gRPC (Open Inference Protocol)"
    )
    defaults = BatchingConfig()
    server.add_argument("--repository", type=Path, default=env("repository", "models"))
    server.add_argument(
        "--host",
        default=env("host", "127.0.0.1"),
        help="bind address (default 127.0.0.1; the server has no authentication)",
    )
    server.add_argument("--port", type=int, default=env("port", 8000), help="HTTP port")
    server.add_argument(
        "--grpc-port", type=int, default=env("grpc_port", 8001), help="gRPC port (default 8001; 0: no gRPC)"
    )
    server.add_argument(
        "--poll-s",
        type=float,
        default=env("poll_s", 2.0),
        help="look for new, changed and removed models this often (default 2; 0: never)",
    )
    server.add_argument(
        "--workers", type=int, default=env("workers", 1), help="server processes sharing the ports"
    )
    server.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    server.add_argument("--runtime-dir", type=Path, help=argparse.SUPPRESS)  # set by the supervisor
    server.add_argument("--max-body-mb", type=float, default=env("max_body_mb", 64.0))
    server.add_argument("--max-rows", type=int, default=env("max_rows", 65536), help="rows per request")
    server.add_argument(
        "--threads", type=int, default=env("threads", 1), help="onnxruntime threads per model"
    )
    server.add_argument(
        "--idle-timeout-s",
        type=float,
        default=env("idle_timeout_s", 15.0),
        help="close a connection that sends nothing (HTTP) or makes no call (gRPC) this long (default 15)",
    )
    server.add_argument(
        "--header-timeout-s",
        type=float,
        default=env("header_timeout_s", 10.0),
        help="request headers (HTTP) or the HTTP/2 handshake (gRPC) must arrive within this (default 10)",
    )
    server.add_argument("--body-timeout-s", type=float, default=env("body_timeout_s", 30.0))
    server.add_argument(
        "--max-connections",
        type=int,
        default=env("max_connections", 1024),
        help="connections per transport (default 1024; lower where the file descriptor limit needs it)",
    )
    server.add_argument("--no-batching", action="store_true", default=env("no_batching", 0) == 1)
    server.add_argument("--max-batch-rows", type=int, default=env("max_batch_rows", defaults.max_batch_rows))
    server.add_argument("--max-delay-us", type=int, default=env("max_delay_us", defaults.max_delay_us))
    server.add_argument("--max-queue", type=int, default=env("max_queue", defaults.max_queue))
    server.add_argument(
        "--no-warmup",
        action="store_true",
        default=env("no_warmup", 0) == 1,
        help="serve a loaded version without running its batch sizes once first (for measuring)",
    )
    server.add_argument(
        "--payload-log",
        type=Path,
        default=os.environ.get("SERVE_PAYLOAD_LOG") or None,
        help="write each sampled inference request and response to this file as CloudEvents (JSON lines)",
    )
    server.add_argument(
        "--payload-sample",
        type=float,
        default=env("payload_sample", 1.0),
        help="share of inference requests written to the payload log, 0 to 1 (default 1)",
    )
    server.add_argument(
        "--payload-log-max-mb",
        type=float,
        default=env("payload_log_max_mb", 64.0),
        help="rotate the payload log before it grows past this (default 64)",
    )
    server.add_argument(
        "--payload-log-backups",
        type=int,
        default=env("payload_log_backups", 3),
        help="rotated payload logs kept, PATH.1 … PATH.N (default 3)",
    )
    predict = commands.add_parser(
        "predict",
        help="predict every row of a CSV or Parquet table with an exported model (needs the batch extra)",
    )
    predict.add_argument(
        "--model", type=Path, required=True, help="the model's directory, e.g. models/auto-mpg"
    )
    predict.add_argument(
        "--data",
        "--csv",
        dest="data",
        required=True,
        help="input table: a CSV or Parquet file, a directory of them (hive partitions too) or a quoted "
        "glob; columns named like the features",
    )
    predict.add_argument(
        "--out", type=Path, help="output file, .csv or .parquet (default: CSV on standard output)"
    )
    predict.add_argument(
        "--keep", default="", help="input columns copied into the output first (comma-separated)"
    )
    predict.add_argument(
        "--delimiter",
        help="CSV field separator, one character, or tab (\\t) (default: sniffed from each file's header)",
    )
    predict.add_argument(
        "--decimal",
        choices=[".", ","],
        help="CSV decimal mark (default: the one the model's training table was read with)",
    )
    predict.add_argument(
        "--threads",
        type=int,
        help="onnxruntime intra-op threads (default: the CPU cores less one, at most 4)",
    )
    return parser


def serve(args, argv: list[str]) -> int:
    from serve import server
    from serve.config import ServerConfig
    from serve.payloads import PayloadLogConfig

    problem = payload_flags_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    config = ServerConfig(
        repository=args.repository,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_rows=args.max_rows,
        threads=args.threads,
        batching=BatchingConfig(
            enabled=not args.no_batching,
            max_batch_rows=args.max_batch_rows,
            max_delay_us=args.max_delay_us,
            max_queue=args.max_queue,
        ),
        warmup=not args.no_warmup,
        payload_log=PayloadLogConfig(
            path=args.payload_log,
            sample=args.payload_sample,
            max_bytes=int(args.payload_log_max_mb * 1024 * 1024),
            backups=args.payload_log_backups,
        ),
        poll_s=args.poll_s,
        idle_timeout_s=args.idle_timeout_s,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        max_connections=args.max_connections,
    )
    return server.main(
        config,
        workers=args.workers,
        argv=argv,
        worker=args.worker,
        runtime_dir=args.runtime_dir,
        log=lambda line: print(line, flush=True),
    )


def payload_flags_problem(args) -> str:
    """What is wrong with the payload log's flags ('' when nothing)."""
    if not 0.0 <= args.payload_sample <= 1.0:
        return f"--payload-sample must be between 0 and 1, got {args.payload_sample:g}"
    if not args.payload_log_max_mb > 0:
        return f"--payload-log-max-mb must be more than 0, got {args.payload_log_max_mb:g}"
    if args.payload_log_backups < 1:
        return f"--payload-log-backups must be at least 1, got {args.payload_log_backups}"
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args, argv)
    return predict(args)


def predict(args) -> int:
    try:
        from serve.predict import PredictError, predict_table
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "pyarrow":
            raise
        print(
            "error: batch prediction needs pyarrow: pip install 'tabular-deploy[batch]' (or make install)",
            file=sys.stderr,
        )
        return 2
    try:
        delimiter = delimiter_from(args.delimiter) if args.delimiter else None
    except ContractError as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return 2
    keep = [c.strip() for c in args.keep.split(",") if c.strip()]
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, terminate)  # as Ctrl-C: the partial file is removed on the way out
    try:
        count = predict_table(args.model, args.data, args.out, keep, delimiter, args.threads, args.decimal)
    except PredictError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (head, less) stopped early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as exc:
        how, code = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        print(how + (f": {args.out} left as it was" if args.out else ""), file=sys.stderr)
        return code
    if args.out:
        seconds = time.perf_counter() - start
        print(
            f"wrote {count:,} predictions to {args.out} in {seconds:.1f}s ({count / seconds:,.0f} rows/s)",
            file=sys.stderr,
        )
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (exit status 143, 128 + SIGTERM, instead of 130)."""


def terminate(signum, frame) -> None:
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
