"""The one stacking rule: which frames make the student's input for frame t.

The student sees frame t with two neighbours, ``(t, t - offset, t + offset)`` (``docs/method.md`` section 2).
A video's first and last ``offset`` frames lack a neighbour; they take the nearest full stack instead (the
stack of frame ``offset``, or of frame ``N - 1 - offset``). A stack that repeated frame t for the missing
neighbour would show no motion on that side, and a student scores such stacks far above the rest of a normal
video, so every video would start with a false alarm. A video too short to have a full stack (at most
``2 * offset`` frames) repeats frame t for its missing neighbours.

:func:`stack_indices` states the rule for random access (training reads stacks out of a frame cache);
:func:`frame_stacks` applies the same rule to a stream of frames, buffering at most ``2 * offset + 1``.

>>> stack_indices(0, n=10, offset=3)
(3, 0, 6)
>>> for stack in frame_stacks(frames, offset=3):   # (3, H, W) or (3, H, W, C): frames t, t-3, t+3
...     ...
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def stack_indices(t: int, n: int, offset: int) -> tuple[int, int, int]:
    """Frame indices ``(t', t' - offset, t' + offset)`` of frame t's stack in a video of ``n`` frames.

    ``t' = t`` except near the ends, where the nearest frame with both neighbours stands in; a video of at
    most ``2 * offset`` frames has none, and its stacks repeat frame t for a missing neighbour.
    """
    if not 0 <= t < n:
        raise IndexError(f"frame {t} is outside a video of {n} frames")
    if n > 2 * offset:
        centre = min(max(t, offset), n - 1 - offset)
        return centre, centre - offset, centre + offset
    before = t - offset if t - offset >= 0 else t
    after = t + offset if t + offset < n else t
    return t, before, after


def frame_stacks(frames: Iterable[np.ndarray], offset: int = 3) -> Iterator[np.ndarray]:
    """Yield ``np.stack([f[t'], f[t'-offset], f[t'+offset]])`` for every frame t, in order (see
    :func:`stack_indices` for ``t'``).

    Shapes: frames ``(H, W)`` -> stacks ``(3, H, W)``; ``(H, W, C)`` -> ``(3, H, W, C)``. Stack t is yielded
    as soon as the rule can be settled: once frame ``t + offset`` has arrived and, for the first frames,
    once the video is known to be longer than ``2 * offset`` frames (or has ended).
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    window: deque[np.ndarray] = deque(maxlen=2 * offset + 1)
    seen = 0  # frames taken from the input; window[-1] is frame seen - 1
    emitted = 0

    def stack(t: int, n: int) -> np.ndarray:
        first = seen - len(window)  # index of window[0]
        centre, before, after = stack_indices(t, n, offset)
        return np.stack([window[centre - first], window[before - first], window[after - first]])

    for frame in frames:
        window.append(frame)
        seen += 1
        if seen <= 2 * offset:
            continue  # the rule for the first frames depends on whether a full stack exists
        # Frames up to seen - 1 - offset have their t + offset neighbour; any n >= seen gives the same stack.
        while emitted <= seen - 1 - offset:
            yield stack(emitted, seen)
            emitted += 1
    while emitted < seen:
        yield stack(emitted, seen)
        emitted += 1


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Yield lists of ``n`` consecutive items (the last may be shorter), consuming the input lazily."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch
