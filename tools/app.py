"""Serve the draw-a-digit page (s5/page.py) with a trained Net (``python -m tools.app --help``).

Exit status: 0 done (--screenshot, --latency); 1 a checkpoint that cannot be used; 2 usage error,
no checkpoint file, gradio or Chromium missing, an address that cannot be served on, or a
--screenshot file that cannot be written; 130 served until Ctrl-C, 143 until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import torch

from s5.checkpoint import CheckpointError, load_given_or_newest
from s5.cli import bounded, fail, program
from s5.page import MAX_UPLOAD, build_app
from tools import browser

PROG = program("tools.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A web page to draw a digit and see what the trained Net sees.")
    parser.add_argument("--checkpoint", type=Path,
                        help="a checkpoint of train.py (default: newest checkpoints/*.pt)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1; 0.0.0.0 for other devices "
                        "on the network, e.g. a phone)")
    parser.add_argument("--port", type=bounded(int, 1, 65535), default=7860,
                        help="port (default 7860)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="serve on a free port, draw a 7 in headless Chromium "
                        f"({browser.CHROMIUM}, Playwright), save the page to PNG and exit")
    parser.add_argument("--latency", action="store_true",
                        help="print the server's share of a stroke (a drawn 7 drawn again and "
                        "analysed, median of 50 calls) and exit; needs no gradio. End to end in "
                        "a browser: python -m tools.bench --page")
    return parser


def unwritable(path: Path) -> str | None:
    """Why a screenshot cannot be saved at ``path`` (no such folder, a folder itself, a folder
    that takes no files), or None: known before a browser is started."""
    if path.is_dir():
        return f"--screenshot {path}: it is a folder; give a file name such as page.png"
    if not path.parent.is_dir():
        return f"--screenshot {path}: no folder {path.parent}"
    try:  # a trial file: os.access says yes to root on a read-only mount
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        return f"--screenshot {path}: cannot write into {path.parent}: {exc.strerror or exc}"
    return None


def serve(page, host: str, port: int) -> int:
    """Serve ``page`` until Ctrl-C (130) or SIGTERM (143), then close it: Gradio deletes its cached
    files and no request is cut off by the interpreter's exit."""
    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, _frame) -> None:
        received.append(signum)
        stop.set()

    # set before launch: a signal while Gradio starts is kept, not a traceback
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        page.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD,
                    prevent_thread_lock=True)
        while not stop.wait(0.5) and page.is_running:  # wait() wakes for the handler's set()
            pass
    finally:
        page.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    if not received:  # the server stopped by itself
        return 0
    name = "Ctrl-C" if received[0] == signal.SIGINT else "SIGTERM"
    print(f"{PROG}: stopped by {name}; the page is closed", file=sys.stderr)
    return 128 + received[0]  # 130 or 143, as every command of the package


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot and (problem := unwritable(args.screenshot)):
        return fail(PROG, problem, 2)
    try:
        net, checkpoint, about = load_given_or_newest(args.checkpoint)
    except CheckpointError as exc:  # 2: no checkpoint file; 1: one that cannot be used
        return fail(PROG, exc, exc.exit_status)
    print(f"checkpoint: {about}", file=sys.stderr)
    if args.latency:
        t = browser.latency(net)
        print(f"server's share of a stroke: median {t['median_ms']:.1f} ms, 90th percentile "
              f"{t['p90_ms']:.1f} ms over {t['calls']} calls (1 thread, {Path(checkpoint).name}); "
              "end to end: python -m tools.bench --page")
        return 0
    try:
        import gradio  # noqa: F401
    except ImportError:
        return fail(PROG, "gradio is not installed; run `make app` or "
                    "`pip install -r requirements-app.txt`", 2)
    if args.screenshot:
        try:
            import playwright  # noqa: F401
        except ImportError:
            return fail(PROG, "--screenshot needs playwright; run "
                        "`pip install -r requirements-app.txt`", 2)
        if not Path(browser.CHROMIUM).exists():
            return fail(PROG, f"--screenshot needs Chromium at {browser.CHROMIUM}; run "
                        "`apt-get install chromium`", 2)
    else:
        try:  # a port in use, or a host that is no address of this machine: one line, before Gradio
            socket.create_server((args.host, args.port)).close()
        except OSError as exc:
            return fail(PROG, f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}; "
                        "choose another --port, or --host 127.0.0.1", 2)
    torch.set_num_threads(1)  # one small image: a single thread is as fast, the other cores free
    page = build_app(net, Path(checkpoint).name)
    if args.screenshot:
        port = browser.free_port(args.host)
        page.launch(server_name=args.host, server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            browser.screenshot(f"http://{args.host}:{port}/", args.screenshot)
        except KeyboardInterrupt:  # one line, as when serving, not a traceback
            print(f"{PROG}: stopped by Ctrl-C; no screenshot was saved", file=sys.stderr)
            return 130
        finally:
            page.close()
        print(f"wrote {args.screenshot}")
        return 0
    return serve(page, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
