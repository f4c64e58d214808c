"""The one exception type users see: the CLI prints its message as a single line and exits 2."""
from __future__ import annotations

import contextvars
import json
import os
import re
import sys
import warnings


class NervError(Exception):
    """A problem the user can fix (bad input, bad file, missing optional dependency)."""


# Whether errors are being read on the command line: set by the CLI while it runs a command.
ON_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar("nerv_rt_on_command_line", default=False)


# parameters whose command-line flag is not their name with dashes
FLAGS = {"class_label": "class", "per_class": "n-per-class"}


def option(name: str) -> str:
    """How an error names a parameter: its command-line flag (--refine-steps, --class) when the CLI runs, the
    Python API's parameter name (refine_steps, class_label) otherwise."""
    return f"--{FLAGS.get(name, name.replace('_', '-'))}" if ON_COMMAND_LINE.get() else name


def setting(name: str, value: object = True) -> str:
    """A parameter set to a value as the user writes it: `--device cuda` (a switch: `--cuda-graph`) on the command
    line, `device='cuda'` (`cuda_graph=True`) in Python."""
    if not ON_COMMAND_LINE.get():
        return f"{name}={value!r}"
    return option(name) if value is True else f"{option(name)} {value}"


def reason(e: BaseException, limit: int = 120) -> str:
    """A library's exception as a short reason inside one error line: its first sentence (or line), never cut
    mid-word; the exception's type when it says nothing."""
    text = str(e).strip()
    if isinstance(e, KeyError) or not re.search(r"[^\W\d_]", text):  # a bare key or code (KeyError(101)): the type too
        text = f"{type(e).__name__} {text}".strip()
    line = text.splitlines()[0]
    first = re.split(r"(?<=[.!?])\s", line)[0]
    first = first if len(first) >= 25 else line  # "Expected e.g." is no sentence
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + " ..."


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """A warning that points at the line that called into nerv_rt (a user's script, or nerv_rt's CLI, which shows
    it as one line), not at the library function that found the problem, however deep."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and (name := frame.f_globals.get("__name__", "")).startswith("nerv_rt.") \
            and name != "nerv_rt.cli":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def interrupt(*_) -> None:
    """A SIGTERM handler: stop as Ctrl-C does, so that cleanups run (temporary files, a server's teardown)."""
    raise KeyboardInterrupt


class ConfigError(NervError, ValueError):
    """A model or training configuration value out of range: a NervError like every error a user can fix, and a
    ValueError as a bad argument is in Python."""


class CheckpointError(NervError):
    """A checkpoint or export folder that cannot be loaded; the message says what is wrong."""


# Top-level modules of the optional extras (pyproject.toml), for one-line "install the extra" errors; "" marks
# the base install's own dependencies (missing only from a broken or --no-deps install).
EXTRA_OF = {"torch": "torch", "safetensors": "torch", "onnx": "export", "onnxscript": "export", "skimage": "train",
            "scipy": "train", "diffusers": "bench", "matplotlib": "bench", "pytest_benchmark": "bench",
            "pynvml": "bench", "tensorrt": "gpu", "cuda": "gpu", "ray": "serve", "starlette": "serve",
            "numpy": "", "onnxruntime": "", "av": "", "imageio": "", "typer": "", "rich": ""}


def module_extra(module: str) -> str | None:
    """The extra that installs `module` ("" for the base install), None for a module nerv-rt does not use."""
    return EXTRA_OF.get(module.split(".")[0])


TORCH_EXTRAS = {"torch", "export", "train", "bench", "test"}  # the extras that install torch
CPU_TORCH = "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu"


def install_source() -> tuple[str, bool]:
    """What pip installs nerv-rt from, and whether it is an editable install: the folder it was installed from
    (`pip install .` or `-e .` of a checkout, from PEP 610's direct_url.json) while that folder exists, else its
    name on a package index."""
    from importlib.metadata import distributions
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    try:  # called while an error message is built: whatever the record holds, never fail here
        # the installed dist-info holds it; a checkout's own nerv_rt.egg-info (a setuptools by-product) may come first
        records = (d.read_text("direct_url.json") for d in distributions(name="nerv-rt"))
        origin = json.loads(next((r for r in records if r), "{}"))
        url = urlparse(origin.get("url", ""))
        folder = url2pathname(url.path)  # unquoted; a Windows drive's path too
        if url.scheme == "file" and isinstance(origin.get("dir_info"), dict) and os.path.isdir(folder):
            return folder, bool(origin["dir_info"].get("editable"))
    except Exception:
        pass
    return "nerv-rt", False


def pip_install(extra: str) -> str:
    """The pip command that adds `extra` ("" for the base install) to this nerv-rt, installed as it is (an editable
    install stays editable)."""
    source, editable = install_source()
    target = f"{source}[{extra}]" if extra else source
    return f'python -m pip install {"-e " if editable else ""}"{target}"'


def install_command(extra: str) -> str:
    """`pip_install(extra)`; where torch is not installed and no NVIDIA driver is (on Linux), the CPU build of torch
    goes first: pip would otherwise pick the multi-GB CUDA one."""
    from importlib.util import find_spec

    from .machine import nvidia_driver

    if extra in TORCH_EXTRAS and find_spec("torch") is None and not nvidia_driver():
        return f"{CPU_TORCH} && {pip_install(extra)}"
    return pip_install(extra)


def missing_extra(module: str, extra: str | None = None) -> NervError:
    """The error for a dependency that is not installed, with the pip command that installs it (`extra`, or the
    extra the module belongs to)."""
    top = module.split(".")[0]
    extra = module_extra(top) if extra is None else extra
    return NervError(f"this needs {top}, which is not installed: {install_command(extra or '')}")


def require(*modules: str, extra: str | None = None) -> None:
    """Fail with `missing_extra` unless every module can be imported (checked without importing); `extra` names
    the extra a command needs when its modules come from several."""
    from importlib.util import find_spec

    for m in modules:
        try:
            found = find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra(m, extra)
