"""What the series runner shows on the console while a notebook runs: the kernel's
own output (start-up noise dropped) and peak memory (:class:`KernelWatch`, put
into jupyter_client by :func:`kernel_manager_class`), and a progress bar with
section milestones (:class:`CellProgress`). Used by :mod:`hm_utils.runner.series`.

What the console shows, per notebook: a start line, a progress bar over its
code cells (on a terminal), a line for every section that took 10 s or more,
and a result line (time, peak memory of the kernel, files written). The
kernel's start-up chatter is silenced where it starts:

* the kernel talks to the runner over IPC sockets (a private folder), not TCP,
  so ipykernel has no "Kernel is running over TCP without encryption" warning
  to give (TCP stays the transport where IPC does not exist, i.e. Windows);
* the kernel's environment gets ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's own
  switch: no INFO/WARNING lines from its C++ code) and
  ``PYDEVD_DISABLE_FILE_VALIDATION=1`` (debugpy's "frozen modules" warning),
  unless the caller's environment sets them otherwise;
* a few lines no setting reaches are dropped by exact pattern from the
  kernel's own stdout/stderr (see :data:`STARTUP_NOISE`): TensorFlow 2.21
  logs them from static initialisers before absl logging is set up, so
  ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them; the ``cuInit`` error of a CUDA
  build is dropped only where the machine has no NVIDIA device at all. GPUs are
  never hidden (``CUDA_VISIBLE_DEVICES`` is left alone).
* the kernel is started with ``--IPKernelApp.capture_fd_output=False`` (:func:`with_fd_output_kept_out`),
  so that what C++ code writes straight to the process's stderr (TensorFlow's start-up lines) reaches
  this filter and the kernel log instead of the running cell's output: the executed notebooks and the
  report carry none of it;
* a finished notebook's kernel is shut down without the SIGINT jupyter_client
  sends first (which made ipykernel log "KeyboardInterrupt caught in kernel"
  when it landed inside a message handler).

Everything else the kernel process writes reaches the console as it comes,
prefixed ``[kernel]``, and the whole unfiltered stream is kept in
``WORK_DIR/executed/<notebook>.kernel.log``. ``--verbose`` turns the filter
off. What cells print goes, as always, into the executed notebook.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["KERNEL_ENV", "STARTUP_NOISE", "STARTUP_NOISE_LINES", "STARTUP_NOISE_PREFIXES", "NO_GPU_NOISE",
           "has_nvidia_device", "is_startup_noise", "KernelWatch", "kernel_manager_class", "CellProgress",
           "NO_FD_CAPTURE", "with_fd_output_kept_out"]

MILESTONE_SECONDS = 10.0           # a section taking at least this long gets a console line
MEMORY_SAMPLE_SECONDS = 0.2        # how often the kernel's process tree is sampled
GB = 1e9                           # peak memory is reported in GB of 10**9 bytes

# Environment given to the kernel (setdefault: a value the caller set wins).
KERNEL_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",               # TensorFlow C++: errors only
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",     # debugpy: no "frozen modules" warning on Python >= 3.11
}

# absl/glog line: "I0000 00:00:1795847699.746097    6512 port.cc:153] message"
_ABSL_LINE = re.compile(r"^(?P<level>[IWEF])\d{4} \S+\s+\d+ (?P<file>[\w.+-]+):\d+\] (?P<msg>.*)$")

# Start-up lines that no setting silences (TensorFlow 2.21 logs them while its
# shared libraries load, before TF_CPP_MIN_LOG_LEVEL is read): exact lines, or
# (level, source file, start of message) of an absl line.
STARTUP_NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
)
STARTUP_NOISE = (
    ("I", "port.cc", "oneDNN custom operations are on."),
    ("I", "cudart_stub.cc", "Could not find cuda drivers on your machine, GPU will not be used."),
    ("I", "cpu_feature_guard.cc", "This TensorFlow binary is optimized to use available CPU instructions"),
)
# continuation line of cpu_feature_guard's message
STARTUP_NOISE_PREFIXES = ("To enable the following instructions: ",)
# Dropped only on a machine without any NVIDIA device: a CUDA build of TensorFlow
# then fails cuInit, which says nothing. With a GPU present it is a real error.
NO_GPU_NOISE = (("E", "cuda_platform.cc", "failed call to cuInit"),)


def has_nvidia_device() -> bool:
    """True when the machine shows any NVIDIA GPU device (Linux device nodes,
    the driver's /proc entry, or WSL's GPU bridge)."""
    return (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
            or any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists())


def is_startup_noise(line: str, gpu_present: bool | None = None) -> bool:
    """True for a kernel output line that is known start-up chatter
    (:data:`STARTUP_NOISE` and friends; the cuInit error only when
    ``gpu_present`` is False, default: :func:`has_nvidia_device`)."""
    line = line.rstrip("\r\n")
    if line in STARTUP_NOISE_LINES or line.startswith(STARTUP_NOISE_PREFIXES):
        return True
    m = _ABSL_LINE.match(line)
    if not m:
        return False
    key = (m["level"], m["file"])
    if any(key == (lv, f) and m["msg"].startswith(msg) for lv, f, msg in STARTUP_NOISE):
        return True
    if any(key == (lv, f) and m["msg"].startswith(msg) for lv, f, msg in NO_GPU_NOISE):
        return not (has_nvidia_device() if gpu_present is None else gpu_present)
    return False


class KernelWatch:
    """One notebook's kernel process: its stdout/stderr through the noise filter
    (all of it into a log file), and the peak memory of its process tree."""

    def __init__(self, log_path: Path, forward, drop_noise: bool = True,
                 interval: float = MEMORY_SAMPLE_SECONDS):
        self.log_path, self.forward, self.drop_noise, self.interval = log_path, forward, drop_noise, interval
        self.gpu_present = has_nvidia_device()
        self.read_fd, self.write_fd = os.pipe()
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="hmk")) if os.name == "posix" else None
        self.pid: int | None = None
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def kernel_env(self, base: dict) -> dict:
        env = dict(base)
        for k, v in KERNEL_ENV.items():
            env.setdefault(k, v)
        return env

    def started(self, process) -> None:
        """The kernel runs: close our copy of the pipe's write end, start reading and sampling."""
        os.close(self.write_fd)
        self.write_fd = None
        self.pid = process.pid
        for target in (self._read, self._sample_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self) -> None:
        with open(self.read_fd, "rb", closefd=True) as pipe, open(self.log_path, "wb") as log:
            for raw in pipe:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if self.drop_noise and is_startup_noise(line, self.gpu_present):
                    continue
                self.forward(f"  [kernel] {line}")

    def sample(self) -> None:
        """Sum of RSS over the kernel and its children now, and the kernel's own
        high-water mark (Linux ``VmHWM``); keeps the largest value seen."""
        if self.pid is None:
            return
        import psutil
        try:
            proc = psutil.Process(self.pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            return
        self.peak_bytes = max(self.peak_bytes, total, _vm_hwm(self.pid))

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def close(self) -> float | None:
        """Stop sampling, let the reader drain; returns the peak in GB (None if never started)."""
        self._stop.set()
        if self.write_fd is not None:  # the kernel never started
            os.close(self.write_fd)
            os.close(self.read_fd)
            self.write_fd = None
        for t in self._threads:
            t.join(timeout=5)
        if self.ipc_dir is not None:
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
        if self.log_path.exists() and self.log_path.stat().st_size == 0:
            self.log_path.unlink()  # the kernel said nothing
        return round(self.peak_bytes / GB, 3) if self.pid is not None else None


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of one process in bytes (``VmHWM``; 0 where unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


#: ipykernel option that leaves what C and C++ code write to file descriptors 1 and 2 (TensorFlow's start-up
#: lines among them) in the kernel's own output, here :class:`KernelWatch`'s log, instead of copying it into
#: the running cell's output, where it showed as red boxes in the executed notebooks and the report
NO_FD_CAPTURE = "--IPKernelApp.capture_fd_output=False"


def with_fd_output_kept_out(kernel_cmd: list[str]) -> list[str]:
    """``kernel_cmd`` with :data:`NO_FD_CAPTURE` added when it starts an ipykernel (and has no such option
    already); any other kernel's command is returned as it is. What Python code prints still goes to the
    notebook as before."""
    cmd = list(kernel_cmd)
    if any("ipykernel" in part for part in cmd) and not any("capture_fd_output" in part for part in cmd):
        cmd.append(NO_FD_CAPTURE)
    return cmd


def kernel_manager_class(watch: KernelWatch):
    """A jupyter_client AsyncKernelManager that starts the kernel over IPC, with
    :data:`KERNEL_ENV`, its stdout/stderr into ``watch`` and its memory sampled."""
    from jupyter_client.manager import AsyncKernelManager

    class RunnerKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            if watch.ipc_dir is not None:
                kw.setdefault("transport", "ipc")
                kw.setdefault("ip", str(watch.ipc_dir / "k"))
            super().__init__(**kw)

        async def _async_pre_start_kernel(self, **kw):
            kw["env"] = watch.kernel_env(kw.get("env") or os.environ)
            kw["stdout"] = kw["stderr"] = watch.write_fd
            return await super()._async_pre_start_kernel(**kw)

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(with_fd_output_kept_out(kernel_cmd), **kw)
            watch.started(self.provisioner.process)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False):
            # jupyter_client sends SIGINT before every shutdown request; landing in the
            # middle of a message handler it makes ipykernel log "KeyboardInterrupt
            # caught in kernel" after a notebook that ran fine. The notebook is done
            # here, so the shutdown goes without it (a kernel that does not stop still
            # gets SIGTERM, then SIGKILL, from jupyter_client).
            watch.sample()  # the kernel's VmHWM, read before it exits
            self._hm_shutting_down = True
            try:
                return await super().shutdown_kernel(now=now, restart=restart)
            finally:
                self._hm_shutting_down = False

        async def _async_interrupt_kernel(self):
            if getattr(self, "_hm_shutting_down", False):
                return None
            return await super()._async_interrupt_kernel()

    return RunnerKernelManager



# ----------------------------------------------------------- progress ---
class CellProgress:
    """Per-notebook progress: a tqdm bar over code cells on a terminal, and a
    console line for each ``## `` section that took at least ``milestone`` s."""

    def __init__(self, label: str, emit, bar: bool, milestone: float = MILESTONE_SECONDS):
        self.label, self.emit, self.use_bar, self.milestone = label, emit, bar, milestone
        self.bar = None
        self.section, self.section_t0 = "set-up", time.perf_counter()
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        """Print a line without tearing the bar."""
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                self.emit(text)

    def on_notebook_start(self, notebook, **_):
        if self.use_bar:
            from tqdm.auto import tqdm
            n = sum(1 for c in notebook.cells if c.cell_type == "code" and c.source.strip())
            self.bar = tqdm(total=n, desc=f"      {self.label}", unit="cell", leave=False, file=sys.stderr,
                            dynamic_ncols=True)

    def on_cell_start(self, cell, cell_index, **_):
        if cell.cell_type == "markdown":
            first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
            if first.startswith("## "):
                self._end_section()
                self.section, self.section_t0 = first[3:].strip(), time.perf_counter()
                if self.bar is not None:
                    self.bar.set_postfix_str(self.section[:40], refresh=True)

    def on_cell_executed(self, **_):
        if self.bar is not None:
            self.bar.update(1)

    def _end_section(self):
        dt = time.perf_counter() - self.section_t0
        if dt >= self.milestone:
            self.write(f"      {self.section}: {dt:.0f} s")

    def close(self, ok: bool):
        if ok and self.section != "set-up":  # a notebook without sections needs no milestone
            self._end_section()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def hooks(self) -> dict:
        return {"on_notebook_start": self.on_notebook_start, "on_cell_start": self.on_cell_start,
                "on_cell_executed": self.on_cell_executed}
