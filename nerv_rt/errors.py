"""The one exception type users see: the CLI prints its message as a single line and exits 2."""


class NervError(Exception):
    """A problem the user can fix (bad input, bad file, missing optional dependency)."""


class CheckpointError(NervError):
    """A checkpoint or export folder that cannot be loaded; the message says what is wrong."""


# Top-level modules of the optional extras (pyproject.toml), for one-line "install the extra" errors.
EXTRA_OF = {"onnx": "export", "onnxruntime": "export", "onnxscript": "export", "skimage": "train", "scipy": "train",
            "diffusers": "bench", "matplotlib": "bench", "pytest_benchmark": "bench", "tensorrt": "gpu", "cuda": "gpu"}


def missing_extra(module: str) -> NervError:
    """The error for an optional dependency that is not installed."""
    extra = EXTRA_OF.get(module.split(".")[0], "test")
    return NervError(f"this needs {module.split('.')[0]}, which is not installed: "
                     f"python -m pip install \"nerv-rt[{extra}]\"")


def require(*modules: str) -> None:
    """Fail with `missing_extra` unless every module can be imported (checked without importing)."""
    from importlib.util import find_spec

    for m in modules:
        if find_spec(m) is None:
            raise missing_extra(m)
