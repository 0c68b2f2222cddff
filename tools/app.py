"""Serve the draw-a-digit page (s5/page.py) with a trained Net (``python -m tools.app --help``).

Exit status: 0 served (until Ctrl-C) or done; 1 a checkpoint that cannot be used; 2 usage error,
no checkpoint file, gradio or Chromium missing, or an address that cannot be served on.
"""

from __future__ import annotations

import argparse
import socket
import sys
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        finally:
            page.close()
        print(f"wrote {args.screenshot}")
        return 0
    page.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
