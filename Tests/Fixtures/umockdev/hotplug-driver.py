#!/usr/bin/python3
"""Drive hotplug uevents into a command running in a umockdev testbed.

Run under the preload library, so this process and the command it starts see the
testbed instead of the real /sys, /dev and udev netlink socket:

    umockdev-wrapper /usr/bin/python3 hotplug-driver.py \
        --initial bench.umockdev --timeout 15 \
        --step expect --step add:hotplug.umockdev --step expect \
        --step remove:hotplug.umockdev --step expect -- devkit list --watch --json

Steps, in order:
  expect       wait (up to --timeout seconds) for one line on the command's stdout
               (with --line-prefix P: for the next line that starts with P)
  add:FILE     add FILE's devices to the testbed, then send an "add" uevent for
               each of its tty devices, in file order
  remove:FILE  send a "remove" uevent for each tty device of FILE, in file order,
               then remove FILE's devices from the testbed

Every line the command prints is echoed to stdout as it arrives, so the caller
checks them. Exit status: 0 when every step ran; 3 on a timeout (the command is
killed); 2 on a usage or testbed error. The command is stopped with SIGTERM at the
end. Requires python3-gi and gir1.2-umockdev-1.0.
"""

import argparse
import os
import select
import signal
import subprocess
import sys
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402


def paragraphs(path):
    """(syspath, subsystem) of each device of a umockdev-record file, in file order."""
    devices = []
    with open(path) as f:
        for block in f.read().split("\n\n"):
            lines = [l for l in block.splitlines() if l.strip()]
            if not lines or not lines[0].startswith("P: "):
                continue
            syspath = "/sys" + lines[0][3:].strip()
            subsystem = next((l[len("E: SUBSYSTEM="):] for l in lines if l.startswith("E: SUBSYSTEM=")), "")
            devices.append((syspath, subsystem))
    return devices


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--initial", action="append", default=[])
    parser.add_argument("--step", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument(
        "--line-prefix", default="",
        help="only lines starting with this count for expect (echoed without it); others are dropped")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("driver: no command given", file=sys.stderr)
        return 2
    if "LD_PRELOAD" not in os.environ or "umockdev" not in os.environ["LD_PRELOAD"]:
        print("driver: run me under umockdev-wrapper", file=sys.stderr)
        return 2

    testbed = UMockdev.Testbed.new()
    for path in args.initial:
        testbed.add_from_file(path)

    # The testbed set UMOCKDEV_DIR in this process's C environment; the child
    # inherits it together with LD_PRELOAD.
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    pending = b""

    def expect():
        nonlocal pending
        deadline = time.monotonic() + args.timeout
        while True:
            while b"\n" not in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                ready, _, _ = select.select([child.stdout], [], [], remaining)
                if ready:
                    chunk = os.read(child.stdout.fileno(), 65536)
                    if not chunk:
                        return False
                    pending += chunk
            line, pending = pending.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text.startswith(args.line_prefix):
                sys.stdout.write(text[len(args.line_prefix):] + "\n")
                sys.stdout.flush()
                return True

    status = 0
    for step in args.step:
        if step == "expect":
            if not expect():
                print(f"driver: no line from the command within {args.timeout}s", file=sys.stderr)
                status = 3
                break
        elif step.startswith("add:"):
            path = step[4:]
            testbed.add_from_file(path)
            for syspath, subsystem in paragraphs(path):
                if subsystem == "tty":
                    testbed.uevent(syspath, "add")
        elif step.startswith("remove:"):
            devices = paragraphs(step[7:])
            for syspath, subsystem in devices:
                if subsystem == "tty":
                    testbed.uevent(syspath, "remove")
            # Parents last in the file: remove from the end, skipping what a
            # parent's removal already took away (this process sees the testbed).
            for syspath, _ in reversed(devices):
                if os.path.exists(syspath):
                    testbed.remove_device(syspath)
        else:
            print(f"driver: unknown step {step!r}", file=sys.stderr)
            status = 2
            break

    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        print("driver: the command ignored SIGTERM", file=sys.stderr)
        status = status or 3
    return status


if __name__ == "__main__":
    sys.exit(main())
