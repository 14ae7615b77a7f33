"""The first code that runs inside the ``run_python`` sandbox, before the model's code (stdlib only).

`tools.sandbox` passes this file's text to the sandbox's interpreter with ``-c``; it is not imported by the
parent. Run as ``python -I -c <this> LIMITS_JSON REPORT_FD``, it:

- sets the resource limits (soft = hard, so the code cannot raise them). They are set here, inside the
  sandbox's user and pid namespaces, rather than in a ``preexec_fn`` of the parent: ``RLIMIT_NPROC`` is
  counted per user namespace, so each sandbox gets its own process budget instead of sharing one with every
  other sandbox of the same uid, and the parent never needs ``preexec_fn`` (unsafe in a threaded program);
- reports which limit a process of the sandbox ran into (a word per line on ``REPORT_FD``: ``memory``,
  ``processes``, ``cpu``, ``file_size``, ``open_files``), children included since they inherit the hooks;
- reads the program from stdin, then runs it as ``__main__`` with stdin at ``/dev/null``.
"""

import errno
import json
import os
import resource
import signal
import sys

_LIMITS = {
    "cpu_s": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
}
_ERRNO_LIMITS = {errno.EAGAIN: b"processes\n", errno.EFBIG: b"file_size\n", errno.EMFILE: b"open_files\n"}


def _main() -> None:
    limits = json.loads(sys.argv[1])
    report_fd = int(sys.argv[2])
    os.set_blocking(report_fd, False)  # a process that fills the pipe must not block on it

    def report(word: bytes) -> None:
        try:  # noqa: SIM105 (no context manager object to allocate in a process out of memory)
            os.write(report_fd, word)
        except OSError:
            pass

    def on_cpu_limit(signum: int, frame: object) -> None:
        report(b"cpu\n")
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGXCPU)

    def excepthook(kind: type[BaseException], error: BaseException, tb: object) -> None:
        if issubclass(kind, MemoryError):
            report(b"memory\n")
        elif issubclass(kind, OSError) and error.errno in _ERRNO_LIMITS:
            report(_ERRNO_LIMITS[error.errno])
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":  # hide this launcher's frame
            tb = tb.tb_next
        sys.__excepthook__(kind, error.with_traceback(tb), tb)

    program = sys.stdin.buffer.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for name, which in _LIMITS.items():
        value = int(limits[name])
        hard = value + 1 if which == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL a second later
        resource.setrlimit(which, (value, hard))
    signal.signal(signal.SIGXCPU, on_cpu_limit)
    sys.excepthook = excepthook
    code = compile(program, "<run_python>", "exec")
    sys.argv = ["<run_python>"]
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    _main()
