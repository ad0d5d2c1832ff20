"""Progress bars for long loops: ``tqdm`` on a terminal, silent when piped or when tqdm is missing."""

from __future__ import annotations


def progress(iterable, desc, total=None, enabled=None):
    """``tqdm`` over ``iterable`` (shown on a terminal, silent when piped or when tqdm is missing)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, disable=None if enabled is None else not enabled, leave=False)
