"""Loading and calling user functions.

Contract (see also docs in the package __init__):
- `udf.function` is `module:attr` (attr may be dotted). With `udf.source`, the source is
  exec'd as that module instead of importing it, so small functions need no image change.
- A class is instantiated once per worker process with `udf.initArgs` (the per-process
  cache below; Ray reuses worker processes across tasks), and its optional `setup()` runs
  once before the first call: that is where a model gets loaded.
- Batch: `f(*arrays) -> array`, one pyarrow array per input column, nulls included.
- RecordBatch: `f(batch) -> array`.
- Scalar: `f(*values) -> value` for every selected row; a null input arrives as None and a
  None result is stored as null. Nothing is skipped behind the function's back, so a
  function that cannot take None fails loudly on the first null instead of silently
  producing nulls.
A null output always counts as computed: the engine tracks computed rows separately.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import threading
import traceback
import types as pytypes
from typing import Any, Callable

import pyarrow as pa

from ..api.models import Udf, UdfKind
from .errors import SpecError, UdfError
from .types import coerce_output, to_pyarrow


def udf_key(udf: Udf, column: str) -> str:
    """Identity of 'computed by this udf version': what must match for a row to count as done."""
    ident = {
        "column": column,
        "function": udf.function,
        "version": udf.version,
        "kind": UdfKind(udf.kind).value,
        "inputColumns": list(udf.input_columns),
        "outputType": str(to_pyarrow(udf.output_type)),
        "initArgs": udf.init_args,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _load_module(module_name: str, source: str | None) -> pytypes.ModuleType:
    if source is None:
        try:
            return importlib.import_module(module_name)
        except ImportError as e:
            raise SpecError("udf.function", f"cannot import module {module_name!r}: {e} (it must be importable where the job runs: in the image, the runtimeEnv, or the working directory; or give udf.source)") from None
        except Exception as e:  # a module that raises at import time is still the user's module
            raise SpecError("udf.function", f"importing module {module_name!r} raised {type(e).__name__}: {e}") from None
    mod = pytypes.ModuleType(module_name)
    mod.__file__ = f"<udf.source of {module_name}>"
    try:
        exec(compile(source, mod.__file__, "exec"), mod.__dict__)
    except Exception as e:
        raise SpecError("udf.source", f"executing the inline source raised {type(e).__name__}: {e}") from None
    return mod


def load_target(udf: Udf) -> Any:
    """The function or class named by udf.function (not instantiated)."""
    module_name, _, attr = udf.function.partition(":")
    obj: Any = _load_module(module_name, udf.source)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError("udf.function", f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError("udf.function", f"{udf.function} is a {type(obj).__name__}, not a function or class")
    return obj


def check_target(udf: Udf) -> Any:
    """load_target, plus what is wrong with the target before it is ever called: initArgs
    given to a function, a class whose instances cannot be called."""
    target = load_target(udf)
    if inspect.isclass(target):
        # Calling an instance looks __call__ up on its class, never on the instance.
        if not any("__call__" in vars(k) for k in target.__mro__ if k is not object):
            raise SpecError("udf.function", f"class {udf.function} has no __call__ method")
    elif udf.init_args:
        raise SpecError("udf.initArgs", f"{udf.function} is a function; initArgs apply only to classes")
    return target


# One instance per (udf identity) per process: Ray reuses worker processes, so a model is
# loaded once per worker, not once per fragment or batch.
_INSTANCES: dict[str, Callable] = {}
_LOCK = threading.Lock()


def _instance_key(udf: Udf) -> str:
    return hashlib.sha256(json.dumps([udf.function, udf.source, udf.init_args, udf.version], sort_keys=True, default=str).encode()).hexdigest()


def get_callable(udf: Udf) -> Callable:
    key = _instance_key(udf)
    with _LOCK:
        fn = _INSTANCES.get(key)
        if fn is not None:
            return fn
        target = check_target(udf)
        if inspect.isclass(target):
            try:
                inst = target(**udf.init_args)
                if callable(getattr(inst, "setup", None)):
                    inst.setup()
            except Exception as e:
                raise UdfError("udf.initArgs", f"constructing {udf.function}(**initArgs) raised {_describe(e)}") from None
            fn = inst
        else:
            fn = target
        _INSTANCES[key] = fn
        return fn


def _describe(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


class UdfRunner:
    """Calls one udf on record batches (<= batch_size rows) of its input columns."""

    def __init__(self, udf: Udf):
        self.udf = udf
        self.fn = get_callable(udf)
        self.output_type = to_pyarrow(udf.output_type)
        self.calls = 0  # function invocations (rows, for Scalar)

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        udf, n = self.udf, batch.num_rows
        label = f"udf {udf.function}"
        try:
            if udf.kind == UdfKind.Scalar:
                cols = [batch.column(c).to_pylist() for c in udf.input_columns]
                out = [self.fn(*vals) for vals in zip(*cols)]
                self.calls += n
            elif udf.kind == UdfKind.RecordBatch:
                out = self.fn(batch.select(udf.input_columns))
                self.calls += 1
            else:
                out = self.fn(*[batch.column(c) for c in udf.input_columns])
                self.calls += 1
        except UdfError:
            raise
        except Exception as e:
            raise UdfError("udf.function", f"{label} raised {_describe(e)}") from None
        return coerce_output(out, self.output_type, n, where=label)
