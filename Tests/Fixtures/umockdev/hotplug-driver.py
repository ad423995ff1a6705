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

  expect:TEXT  wait for the next line that contains TEXT
  exit         wait (up to --timeout seconds) for the command to end by itself
               (a one-shot command such as `devkit list --probe`): no SIGTERM;
               prints "driver: exit status N after S s" on stderr (-N: killed
               by signal N; S: its run time)
  sleep:S      wait S seconds
  signal:SIG   send SIG (e.g. INT) to the command
  run:CMD      run the shell command CMD outside the testbed (without the
               preload), e.g. restarting a database server; it must exit 0
               within twice --timeout (at most 40 s)

A virtual board can stand behind a tty node, so the command provisions it through
the node udev announced (see Tests/DevKitCLITests/WatchUMockdevTests.swift):

  --board-command CMD   start CMD (shell words, e.g. `devkit emulate --link L`)
                        before the command; its first stdout line means it is up
  --board NODE=LINK     when a step adds NODE (e.g. /dev/ttyACM2), the testbed's
                        node becomes a symlink to LINK (the emulator's pty link), so
                        opening NODE in the testbed opens the real pty; the
                        preload's emulated ioctls on NODE run on that pty instead
                        (umockdev would answer ENOTTY to TIOCEXCL and the like)
  board-signal:SIG      step: send SIG (e.g. USR1) to the board command
  board-expect          step: wait for one line on the board command's stdout

Every line the command prints is echoed to stdout as it arrives, so the caller
checks them: with --echo-all every line (also those expect:TEXT skips, and those
printed after the last step until the command exits), else only the lines the
expect steps matched. --merge-stderr sends the command's stderr there too. Exit
status: 0 when every step ran; 3 on a timeout (the command is killed); 2 on a
usage or testbed error; 4 with --check-exit when the command did not exit 0 after
SIGTERM. The command (then the board command) is stopped with SIGTERM at the end.
Requires python3-gi and gir1.2-umockdev-1.0.
"""

import argparse
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import GLib, UMockdev  # noqa: E402


# Every process started, killed if the driver fails with an exception, so none
# outlives it holding the caller's pipes open.
started = []


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


class LineReader:
    """Lines of a child's stdout, read with a deadline (no thread, no busy wait)."""

    def __init__(self, stream, echo):
        self.stream = stream
        self.echo = echo
        self.pending = b""
        self.closed = False

    def line(self, deadline):
        """The next line as text, or None at the deadline or end of output."""
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            ready, _, _ = select.select([self.stream], [], [], remaining)
            if ready:
                chunk = os.read(self.stream.fileno(), 65536)
                if not chunk:
                    self.closed = True
                    return None
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        text = line.decode(errors="replace")
        if self.echo:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        return text


def passthrough_ioctls(testbed, node):
    """Run the emulated ioctls on `node` as real ones in the client (on the pty)."""
    handler = UMockdev.IoctlBase()

    def on_ioctl(_handler, client):
        result, error = client.execute()
        client.complete(result, error if result == -1 else 0)
        return True

    handler.connect("handle-ioctl", on_ioctl)
    try:
        testbed.detach_ioctl(node)
    except Exception:  # noqa: BLE001 - nothing attached yet
        pass
    testbed.attach_ioctl(node, handler)
    return handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--initial", action="append", default=[])
    parser.add_argument("--step", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument(
        "--line-prefix", default="",
        help="only lines starting with this count for expect (echoed without it); others are dropped")
    parser.add_argument("--echo-all", action="store_true")
    parser.add_argument("--merge-stderr", action="store_true")
    parser.add_argument("--check-exit", action="store_true")
    parser.add_argument("--board-command")
    parser.add_argument("--board", action="append", default=[], help="NODE=LINK")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("driver: no command given", file=sys.stderr)
        return 2
    if "LD_PRELOAD" not in os.environ or "umockdev" not in os.environ["LD_PRELOAD"]:
        print("driver: run me under umockdev-wrapper", file=sys.stderr)
        return 2
    boards = {}
    for spec in args.board:
        node, _, link = spec.partition("=")
        if not node.startswith("/dev/") or not link:
            print(f"driver: --board wants NODE=LINK, got {spec!r}", file=sys.stderr)
            return 2
        boards[node] = link

    testbed = UMockdev.Testbed.new()
    handlers = []
    if boards:
        # The ioctl handlers complete each call through the default main context:
        # something must iterate it, or a call can wait for its reply forever.
        threading.Thread(target=GLib.MainLoop().run, daemon=True).start()

    def connect_boards(path):
        # After add_from_file, before the uevent: the node udev will announce
        # must already lead to the board.
        names = {"/dev/" + l[3:].strip() for l in open(path) if l.startswith("N: ")}
        for node, link in boards.items():
            if node in names:
                testbed_node = testbed.get_root_dir() + node
                os.unlink(testbed_node)
                os.symlink(link, testbed_node)
                handlers.append(passthrough_ioctls(testbed, node))

    for path in args.initial:
        testbed.add_from_file(path)
        connect_boards(path)

    board = None
    board_lines = None
    if args.board_command:
        # Outside the testbed: the preload would emulate (and refuse) the ioctls
        # on the /dev/ptmx it opens for its pty.
        environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "UMOCKDEV_DIR")}
        board = subprocess.Popen(shlex.split(args.board_command), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, env=environment)
        started.append(board)
        board_lines = LineReader(board.stdout, echo=False)
        if board_lines.line(time.monotonic() + args.timeout) is None:
            print("driver: the board command did not come up", file=sys.stderr)
            board.kill()
            board.wait()
            return 3

    # The testbed set UMOCKDEV_DIR in this process's C environment; the child
    # inherits it together with LD_PRELOAD.
    child_started = time.monotonic()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT if args.merge_stderr else None)
    started.append(child)
    lines = LineReader(child.stdout, echo=args.echo_all)

    def expect(text=None):
        deadline = time.monotonic() + args.timeout
        while True:
            line = lines.line(deadline)
            if line is None:
                return False
            if text is not None:
                if text in line:
                    return True
            elif line.startswith(args.line_prefix):
                if not args.echo_all:
                    sys.stdout.write(line[len(args.line_prefix):] + "\n")
                    sys.stdout.flush()
                return True

    status = 0
    for step in args.step:
        if step == "expect" or step.startswith("expect:"):
            text = step[len("expect:"):] if step.startswith("expect:") else None
            if not expect(text):
                wanted = f"a line containing {text!r}" if text is not None else "a line"
                print(f"driver: no {wanted} from the command within {args.timeout}s", file=sys.stderr)
                status = 3
                break
        elif step == "exit":
            # Every line it prints until then is echoed (with --echo-all).
            deadline = time.monotonic() + args.timeout
            while lines.line(deadline) is not None:
                pass
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"driver: the command did not exit within {args.timeout}s", file=sys.stderr)
                status = 3
                break
            print(f"driver: exit status {child.returncode} after {time.monotonic() - child_started:.3f} s", file=sys.stderr)
        elif step.startswith("sleep:"):
            time.sleep(float(step[len("sleep:"):]))
        elif step.startswith("signal:"):
            child.send_signal(getattr(signal, "SIG" + step[len("signal:"):]))
        elif step.startswith("add:"):
            path = step[4:]
            testbed.add_from_file(path)
            connect_boards(path)
            for syspath, subsystem in paragraphs(path):
                if subsystem == "tty":
                    testbed.uevent(syspath, "add")
        elif step.startswith("remove:"):
            devices = paragraphs(step[7:])
            for syspath, subsystem in devices:
                if subsystem == "tty":
                    testbed.uevent(syspath, "remove")
            # Children first (file order), so each one's /sys/class link goes
            # with it and the same file can be added again; skip what is gone
            # already (this process sees the testbed).
            for syspath, _ in devices:
                if os.path.exists(syspath):
                    testbed.remove_device(syspath)
        elif step.startswith("run:"):
            # Outside the testbed: a server the command talks to is no device.
            env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "UMOCKDEV_DIR")}
            # Output to a file, not a pipe: a server it starts could hold a pipe open.
            # In a process group of its own, killed whole at --timeout.
            with tempfile.TemporaryFile() as output:
                command = subprocess.Popen(step[len("run:"):], shell=True, env=env, stdin=subprocess.DEVNULL,
                                           stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
                bound = min(args.timeout * 2, 40)
                try:
                    returncode = command.wait(timeout=bound)
                except subprocess.TimeoutExpired:
                    os.killpg(command.pid, signal.SIGKILL)
                    command.wait()
                    returncode = f"killed after {bound}s"
                output.seek(0)
                text = output.read().decode(errors="replace")
            if returncode != 0:
                print(f"driver: {step!r} failed ({returncode}): {text}", file=sys.stderr)
                status = 2
                break
        elif step.startswith("board-signal:") and board is not None:
            board.send_signal(getattr(signal, "SIG" + step[len("board-signal:"):]))
        elif step == "board-expect" and board is not None:
            if board_lines.line(time.monotonic() + args.timeout) is None:
                print(f"driver: no line from the board within {args.timeout}s", file=sys.stderr)
                status = 3
                break
        else:
            print(f"driver: unknown step {step!r}", file=sys.stderr)
            status = 2
            break

    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    if args.echo_all:
        # What the command prints while it stops (boards finishing) counts too.
        deadline = time.monotonic() + args.timeout
        while lines.line(deadline) is not None:
            pass
    try:
        child.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        print("driver: the command ignored SIGTERM", file=sys.stderr)
        status = status or 3
    if args.check_exit and child.returncode != 0 and status == 0:
        print(f"driver: the command exited with status {child.returncode}", file=sys.stderr)
        status = 4
    if board is not None:
        board.send_signal(signal.SIGTERM)
        try:
            board.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BaseException:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        raise
