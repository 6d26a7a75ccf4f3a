"""Memos for work Beam repeats on the machine that builds and runs the job; each gives Beam the answer
it would have computed itself (``bench/per_run.py`` prints a small run's CPU with and without them).
``apply()`` installs them all; each is idempotent and leaves a Beam without what it patches as it is.
``GROUNDCOT_BEAM_PATCHES=0`` in the environment installs none (Beam's own path, e.g. to rule them out).

- ``userstate.get_dofn_specs`` signs every method of a DoFn (``inspect.signature``) each time it is
  asked whether the DoFn keeps state, about 600 times per run of this graph (building it, translating
  it, once more per bundle processor of the in-process runner). The answer is fixed for a DoFn object
  (its methods' defaults), so it is kept per object. Beam's maintainers proposed the same memo
  (apache/beam#9925, never merged). Errors are not kept; an object that cannot be weakly referenced is
  asked every time.
- ``core.get_function_args_defaults`` (the signature behind the above, and behind every DoFn's
  ``MethodWrapper``) is kept per plain Python function while its code and defaults stay the same
  objects; a function with its own ``__signature__`` or ``__wrapped__``, or any other callable, is
  asked every time.
- ``PipelineOptions.view_as(cls)`` builds ``cls``'s argparse parser and parses the flags again on
  every call (about 360 per run, mostly ``view_as(TypeOptions)`` per applied transform). What it
  parses depends only on ``cls`` and the flags, so the parsed values are kept per (options object,
  class) while the flags compare equal; each call still returns a new view sharing the object's
  values, as Beam's does. Another options object (each ``Pipeline`` deep-copies its options) gets a
  deep copy of the first parse of the same class and flags: values of its own, as a parse makes. A
  class with its own ``__init__``, and flags from ``sys.argv``, are parsed every time. (A view made
  from a kept parse skips ``__init__``'s ``logging.basicConfig()``, a no-op once the first options
  object, which is still built by Beam, has made it.)
- Beam's pickler compresses every DoFn it pickles with bz2 (level 9: about 0.4 ms even for a small
  one), twice per DoFn (``ParDo``'s copy, then the job's proto), and decompresses each once per bundle
  processor. ``bz2.compress`` and ``bz2.decompress`` are pure functions of their bytes: recent payloads
  up to 256 KiB are kept (16 MiB each way at most), so the bytes are the same as without the memo.
- ``ParDo`` reads and tokenizes the source of every DoFn's ``process`` (to warn about ``yield`` with
  ``return``). The body it extracts is kept per code object while the file's size and mtime (what
  linecache checks) are unchanged; the warnings are still made per ``ParDo``.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os
import threading
import weakref


def apply() -> None:
    if os.environ.get("GROUNDCOT_BEAM_PATCHES", "1") == "0":
        return
    memoize_dofn_specs()
    memoize_function_args()
    memoize_option_views()
    memoize_pickle_compression()
    memoize_function_bodies()


def memoize_dofn_specs() -> None:
    """Idempotent; a Beam without ``userstate.get_dofn_specs`` is left as it is."""
    from apache_beam.transforms import userstate

    original = getattr(userstate, "get_dofn_specs", None)
    if original is None or getattr(original, "_groundcot_memo", False):
        return
    kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(original)
    def get_dofn_specs(dofn):
        try:
            return kept[dofn]
        except (KeyError, TypeError):
            pass
        specs = original(dofn)
        try:
            kept[dofn] = specs
        except TypeError:  # not hashable or not weakly referenceable
            pass
        return specs

    get_dofn_specs._groundcot_memo = True
    userstate.get_dofn_specs = get_dofn_specs


def memoize_option_views() -> None:
    """Idempotent; views whose options keep no ``_visible_options`` (another Beam) are never kept."""
    from apache_beam.options.pipeline_options import PipelineOptions

    original = PipelineOptions.view_as
    if getattr(original, "_groundcot_memo", False):
        return
    init = PipelineOptions.__init__
    kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # options -> {cls: (flags, parsed)}
    first: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # cls -> {flags: a parse no view holds}

    @functools.wraps(original)
    def view_as(self, cls):
        flags = self._flags
        try:
            known = tuple(flags) if flags is not None else None  # None: sys.argv, which may change
            views = kept.setdefault(self, {}) if known is not None and cls.__init__ is init else None
        except TypeError:  # flags or options that cannot be kept
            views = None
        if views is None:
            return original(self, cls)
        entry = views.get(cls)
        if entry is None or entry[0] != known:
            parses = first.setdefault(cls, {})
            if known not in parses:
                view = original(self, cls)
                if "_visible_options" in view.__dict__:
                    views[cls] = (known, view._visible_options)
                    if len(parses) >= 16:
                        parses.clear()
                    parses[known] = copy.deepcopy(view._visible_options)
                return view
            entry = views[cls] = (known, copy.deepcopy(parses[known]))  # values of its own, as a parse makes
        view = cls.__new__(cls)  # what cls(flags) makes, without parsing the same flags again
        object.__setattr__(view, "_flags", flags)
        object.__setattr__(view, "_visible_options", entry[1])
        object.__setattr__(view, "_all_options", self._all_options)
        for name in view._visible_option_list():  # as Beam's view_as: a key removed since is set again
            if name not in self._all_options:
                self._all_options[name] = getattr(view._visible_options, name)
        return view

    view_as._groundcot_memo = True
    PipelineOptions.view_as = view_as


_OWN_SIGNATURE = ("__wrapped__", "__signature__", "__text_signature__", "_partialmethod")


def memoize_function_args() -> None:
    """Idempotent; a Beam without ``core.get_function_args_defaults`` is left as it is."""
    import types

    from apache_beam.transforms import core

    original = getattr(core, "get_function_args_defaults", None)
    if original is None or getattr(original, "_groundcot_memo", False):
        return
    kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> (code, defaults, bound, answer)

    @functools.wraps(original)
    def get_function_args_defaults(f):
        bound = isinstance(f, types.MethodType)
        fn = f.__func__ if bound else f
        if type(fn) is not types.FunctionType or any(name in fn.__dict__ for name in _OWN_SIGNATURE):
            return original(f)
        entry = kept.get(fn)
        if entry is None or entry[0] is not fn.__code__ or entry[1] is not fn.__defaults__ or entry[2] != bound:
            args, defaults = original(f)
            kept[fn] = entry = (fn.__code__, fn.__defaults__, bound, (args, defaults))
        args, defaults = entry[3]
        return list(args), list(defaults)  # callers own their lists, as with Beam's

    get_function_args_defaults._groundcot_memo = True
    core.get_function_args_defaults = get_function_args_defaults


class _Recent:
    """Recent answers of a pure function of bytes, by key, up to ``budget`` bytes of keys and answers
    (the oldest dropped first); safe across threads."""

    def __init__(self, budget: int):
        self.budget, self.used, self.lock, self.items = budget, 0, threading.Lock(), {}

    def get(self, key: bytes):
        with self.lock:
            return self.items.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        with self.lock:
            if key not in self.items:
                self.items[key] = value
                self.used += len(key) + len(value)
            while self.used > self.budget:
                oldest = next(iter(self.items))
                self.used -= len(oldest) + len(self.items.pop(oldest))


class _Bz2Memo:
    """``bz2`` as Beam's pickler sees it: level-9 ``compress`` and ``decompress`` of payloads up to
    ``MAX_BYTES`` kept (both are pure functions of their bytes); everything else is the module's own."""

    MAX_BYTES, BUDGET = 256 << 10, 16 << 20

    def __init__(self, bz2):
        self.module, self.packed, self.unpacked = bz2, _Recent(self.BUDGET), _Recent(self.BUDGET)

    def __getattr__(self, name):
        return getattr(self.module, name)

    def compress(self, data, compresslevel=9):
        if type(data) is not bytes or len(data) > self.MAX_BYTES or compresslevel != 9:
            return self.module.compress(data, compresslevel)
        packed = self.packed.get(data)
        if packed is None:
            packed = self.module.compress(data, compresslevel)
            self.packed.put(data, packed)
            self.unpacked.put(packed, data)  # what the bundle processors of a local run will unpack
        return packed

    def decompress(self, data):
        if type(data) is not bytes or len(data) > self.MAX_BYTES:
            return self.module.decompress(data)
        unpacked = self.unpacked.get(data)
        if unpacked is None:
            unpacked = self.module.decompress(data)
            if len(unpacked) <= self.MAX_BYTES:
                self.unpacked.put(data, unpacked)
        return unpacked


def memoize_pickle_compression() -> None:
    """Idempotent; a Beam whose cloudpickle pickler does not use ``bz2`` is left as it is."""
    from apache_beam.internal import cloudpickle_pickler

    bz2 = getattr(cloudpickle_pickler, "bz2", None)
    if bz2 is None or isinstance(bz2, _Bz2Memo):
        return
    cloudpickle_pickler.bz2 = _Bz2Memo(bz2)


def memoize_function_bodies() -> None:
    """Idempotent; a Beam without ``core._get_function_body_without_inners`` is left as it is."""
    from apache_beam.transforms import core

    original = getattr(core, "_get_function_body_without_inners", None)
    if original is None or getattr(original, "_groundcot_memo", False):
        return
    kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # code -> (its file's size and mtime, body)

    @functools.wraps(original)
    def body(func):
        try:
            target = inspect.unwrap(func)  # the function whose lines inspect.getsourcelines reads
        except ValueError:
            return original(func)
        target = target.__func__ if inspect.ismethod(target) else target
        if not inspect.isfunction(target):
            return original(func)
        code = target.__code__
        try:
            stat = os.stat(code.co_filename)
        except (OSError, ValueError):  # no file (a lambda made by exec, a zip): asked every time
            return original(func)
        stamp = (stat.st_size, stat.st_mtime_ns)  # what linecache checks before reading a file again
        entry = kept.get(code)
        if entry is None or entry[0] != stamp:
            entry = (stamp, original(func))
            kept[code] = entry
        return entry[1]

    body._groundcot_memo = True
    core._get_function_body_without_inners = body
