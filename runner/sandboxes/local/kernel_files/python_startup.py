"""Sandpit's Python kernel start-up (run by ipykernel's exec_files, outside any cell).

- IPython 9 keeps every printed chunk in `history_manager.outputs`: repeated big prints would
  fill the kernel's memory, so nothing is kept;
- stdout/stderr are flushed every 64 KiB, so one huge print becomes many small messages and the
  server never holds a giant message;
- switching between stdout and stderr flushes the other stream first, so output keeps the order
  it was written in;
- an interrupt stops even a fork loop (see below);
- iopub waits for a slow server instead of dropping output (the server's queue stays small);
- a `%pip` that fails raises, so the run ends as failed rather than green;
- before and after each cell, exited child processes are reaped (a fork bomb would otherwise
  leave zombies that count against the sandbox's process limit).
"""


# A DataFrame result also carries E2B's table, `e2b/data`: {column: [values]} (JSON-safe; frames
# over DATA_MAX_CELLS cells carry none, so a huge frame isn't serialised twice); a matplotlib
# figure carries E2B's chart, `e2b/chart`.
DATA_MAX_CELLS = 100_000


def _register_data_formatter(ip) -> None:
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    def table(frame):
        try:
            if frame.size > DATA_MAX_CELLS:
                return None
            import json

            rows = json.loads(frame.to_json(orient="values", date_format="iso", default_handler=str))
            return {str(column): [row[i] for row in rows] for i, column in enumerate(frame.columns)}
        except Exception:
            return None

    class DataFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict,)

    formatter = DataFormatter(parent=ip.display_formatter)
    formatter.for_type_by_name("pandas.core.frame", "DataFrame", table)
    ip.display_formatter.formatters["e2b/data"] = formatter

    class ChartFormatter(BaseFormatter):
        # A matplotlib figure's data as E2B's `chart` (e2b_charts, as E2B's template runs it).
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")
        _return_type = (dict,)

        def __call__(self, obj):
            import sys

            if sys.modules.get("matplotlib.figure") is None or not isinstance(obj, sys.modules["matplotlib.figure"].Figure):
                return super().__call__(obj)
            try:
                from e2b_charts import chart_figure_to_dict

                return chart_figure_to_dict(obj) or None
            except Exception:
                return None

    ip.display_formatter.formatters["e2b/chart"] = ChartFormatter(parent=ip.display_formatter)


def _show_pil_images() -> None:
    """As E2B's template does: `image.show()` and `image.save(<a file name>)` display the image as
    a result. PIL is patched when it is first imported (a one-shot import hook), not at start."""
    import importlib.abc
    import importlib.util
    import sys

    def patch(module) -> None:
        from IPython.display import display

        original_save = module.Image.save

        def show(self, title=None):
            display(self)

        def save(self, fp, format=None, **params):
            if isinstance(fp, str):
                display(self)
            return original_save(self, fp, format, **params)

        module.Image.show = show
        module.Image.save = save

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "PIL.Image":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module) -> None:
                exec_module(module)
                try:
                    patch(module)
                except Exception:
                    pass  # a PIL this doesn't fit: images just aren't shown

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, Hook())


def _sandpit_setup() -> None:
    import os
    import sys

    chunk = 64 * 1024
    state = {"last": None, "pending": 0}

    def wrap(stream):
        write_original = stream.write
        flush_original = stream.flush

        def flush():
            state["pending"] = 0
            flush_original()

        def write(text):
            if not isinstance(text, str):
                return write_original(text)  # raises the usual TypeError
            last = state["last"]
            if last is not None and last is not stream and state["pending"]:
                last.flush()
            state["last"] = stream
            for start in range(0, len(text), chunk) if len(text) > chunk else (0,):
                part = text[start : start + chunk]
                write_original(part)
                state["pending"] += len(part)
                if state["pending"] >= chunk:
                    flush()
            return len(text)

        stream.write = write
        stream.flush = flush

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "pub_thread"):  # ipykernel's OutStream
            wrap(stream)

    def reap_before(*_args: object) -> None:
        reap()  # an interrupt here propagates: the cell is stopped before it starts

    def reap_after(*_args: object) -> None:
        try:
            reap()
        except KeyboardInterrupt:  # a late interrupt after the cell ended: nothing left to stop
            pass

    def reap() -> None:
        me = os.getpid()
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] == "Z" and int(fields[1]) == me:
                try:
                    os.waitpid(int(name), os.WNOHANG)
                except ChildProcessError:
                    pass

    class NoOutputs(dict):
        """Looks like IPython's output history, remembers nothing."""

        def __contains__(self, key: object) -> bool:
            return False

        def __getitem__(self, key: object) -> list:
            return []

    # An interrupt that lands inside os.fork()'s at-fork hooks (logging's lock) is "ignored" and
    # leaves that lock held, so a fork loop could not be stopped and the kernel then hung. While
    # forking, SIGINT is only noted, then raised in the caller's code; children die on SIGINT
    # instead of unwinding into a copy of the kernel.
    import signal
    import threading

    fork_original = os.fork

    def fork_without_interrupts():
        if threading.current_thread() is not threading.main_thread():
            return fork_original()
        noted = []
        previous = signal.signal(signal.SIGINT, lambda *_: noted.append(True))
        try:
            pid = fork_original()
        except OSError:
            signal.signal(signal.SIGINT, previous)
            if noted:
                raise KeyboardInterrupt from None
            raise
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            return pid
        signal.signal(signal.SIGINT, previous)
        if noted:
            raise KeyboardInterrupt
        return pid

    os.fork = fork_without_interrupts

    ip = get_ipython()  # noqa: F821
    if ip is not None:
        ip.events.register("pre_run_cell", reap_before)  # children that exited since the last cell
        ip.events.register("post_run_cell", reap_after)
        ip.history_manager.outputs = NoOutputs()
        _register_data_formatter(ip)
        _show_pil_images()
        pip_magic = ip.find_line_magic("pip")
        if pip_magic is not None:
            import subprocess

            class CalledProcessError(subprocess.CalledProcessError):
                """pip failed in %pip: shown as its one line, not a traceback through this file."""

            def pip(line: str) -> None:
                """IPython's %pip, but a failed pip fails the cell (it only set `_exit_code`)."""
                ip.user_ns["_exit_code"] = 0
                pip_magic(line)
                exit_code = ip.user_ns.get("_exit_code", 0)
                if exit_code:
                    raise CalledProcessError(exit_code, f"pip {line}".strip()) from None

            def one_line(shell, etype, value, tb, tb_offset=None):  # IPython's custom-exception handler
                stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
                shell._showtraceback(etype, value, stb)  # ipykernel: the `error` message and the reply
                return stb

            ip.set_custom_exc((CalledProcessError,), one_line)
            ip.register_magic_function(pip, "line", "pip")
        try:
            import zmq

            iopub = ip.kernel.iopub_thread
            if iopub.socket.socket_type == zmq.XPUB:
                # Output waits for a slow reader instead of being dropped once ~64 MB are queued.
                iopub.schedule(lambda: iopub.socket.setsockopt(zmq.XPUB_NODROP, 1))
        except Exception:  # an ipykernel without these: keep its lossy default
            pass


_sandpit_setup()
del _sandpit_setup
