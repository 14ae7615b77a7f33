"""The first code that runs inside the ``run_python`` sandbox, before the model's code (stdlib only).

`tools.sandbox` passes this file's text to the sandbox's interpreter with ``-c``; it is not imported by the
parent. Run as ``python -I -u -c <this> LIMITS_JSON REPORT_FD``, as the sandbox's pid 1 (bwrap ``--as-pid-1``:
no bwrap init inside the sandbox), it splits in two:

- the supervisor (pid 1) makes itself non-dumpable, so that no other process of the sandbox (same uid) can
  read or write its memory or reopen its file descriptors through ``/proc`` (``ptrace`` itself is refused by
  the seccomp filter; signals from inside a pid namespace do not reach its init). It reads the program from
  stdin, forks the program's process, and reaps every process that becomes its child (orphans come to pid 1)
  until the program's process has ended. Then it writes one JSON line on ``REPORT_FD``, which only it holds:
  how the program ended (exit status or signal, from the kernel's wait status) and whether a process was
  killed at its CPU limit (its rusage says so, not the program). It exits with the program's status; the
  kernel then kills whatever is left in the sandbox's pid namespace.
- the program's process closes ``REPORT_FD``, sets the resource limits (soft = hard, so the code cannot raise
  them) and runs the program as ``__main__`` with stdin at ``/dev/null``. The limits are set here, inside the
  sandbox's user namespace, rather than in a ``preexec_fn`` of the parent: ``RLIMIT_NPROC`` is counted per
  user namespace, so each sandbox has its own process budget, and the parent never needs ``preexec_fn``
  (unsafe in a threaded program).

The program can claim nothing on the report: whatever it prints or raises, ``limits_hit`` holds only what its
supervisor and ironloop saw from outside it. Python runs unbuffered (``-u``; ``-I`` ignores
``PYTHONUNBUFFERED``), so what the program printed before a limit stopped it is returned.
"""

import ctypes
import json
import os
import resource
import signal
import sys
import types

_LIMITS = {
    "cpu_s": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core_bytes": resource.RLIMIT_CORE,
}
_PR_SET_DUMPABLE = 4
_CPU_SIGNALS = (signal.SIGXCPU, signal.SIGKILL)  # the soft CPU limit, then the hard one a second later
CPU_LIMIT_SHARE = 0.5
"""A process killed by one of those signals hit its CPU limit if its rusage reaches this share of the limit
(a program that signals itself has used next to nothing). Not the whole limit: the kernel checks the limit on
tick-sampled CPU time, which runs ahead of the precise time rusage gives (by up to 8 % measured on a loaded
2-core machine, 0.92 s at a 1 s limit)."""


def _main() -> None:
    limits = json.loads(sys.argv[1])
    report_fd = int(sys.argv[2])
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0)")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the init lives until its program is done
    program = sys.stdin.buffer.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    child = os.fork()
    if child:
        os._exit(_supervise(child, report_fd, int(limits["cpu_s"])))
    os.close(report_fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name, which in _LIMITS.items():
        value = int(limits[name])
        hard = value + 1 if which == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL a second later
        resource.setrlimit(which, (value, hard))
    sys.excepthook = _excepthook
    code = compile(program, "<run_python>", "exec")
    sys.argv = ["<run_python>"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


def _supervise(child: int, report_fd: int, cpu_s: int) -> int:
    """Reap until ``child`` ends; report how it ended; the exit code bwrap passes on (128 + n for signal n)."""
    cpu_limit = False
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CPU_SIGNALS:
            cpu_limit = cpu_limit or usage.ru_utime + usage.ru_stime >= cpu_s * CPU_LIMIT_SHARE
        if pid == child:
            break
    code = os.waitstatus_to_exitcode(status)
    exit_status = code if code >= 0 else 128 - code
    report = {"exit_status": exit_status, "signal": signal.Signals(-code).name if code < 0 else None, "cpu": cpu_limit}
    os.write(report_fd, json.dumps(report).encode() + b"\n")
    return exit_status


def _excepthook(kind: type[BaseException], error: BaseException, tb: types.TracebackType | None) -> None:
    """The usual traceback, without this launcher's frames."""
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    sys.__excepthook__(kind, error.with_traceback(tb), tb)


if __name__ == "__main__":
    _main()
