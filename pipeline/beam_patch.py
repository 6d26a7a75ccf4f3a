"""One memo for Beam's DoFn introspection, applied on the machine that builds and runs the job.

``apache_beam.transforms.userstate.get_dofn_specs`` signs every method of a DoFn (``inspect.signature``)
each time it is asked whether the DoFn keeps state, and Beam asks about 600 times per run of this
graph (building it, translating it, and once more per bundle processor of the in-process runner): a
quarter of the CPU of a small local run. The answer is fixed for a DoFn object (its methods'
defaults), so it is kept per object. Beam's maintainers proposed the same memo (apache/beam#9925,
never merged). Errors are not kept; an object that cannot be weakly referenced is asked every time.
"""
from __future__ import annotations

import functools
import weakref


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
