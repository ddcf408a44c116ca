"""Video in and out: sources (files, frame folders, cameras, streams), the stacking rule, and the writer.

>>> from aedcli.video import open_video, frame_stacks, VideoWriter
>>> with open_video("clip.mp4", gray=True) as video:
...     for stack in frame_stacks(video.frames(), offset=3):   # (3, H, W): frames t, t-3, t+3
...         ...
"""

from aedcli.video.sources import (
    DEFAULT_FPS,
    DEFAULT_TIMEOUT_S,
    FRAME_SUFFIXES,
    STREAM_SCHEMES,
    OnError,
    VideoInfo,
    VideoSource,
    frame_files,
    iter_frames,
    natural_key,
    open_video,
    to_channels,
)
from aedcli.video.stacks import batched, frame_stacks, stack_indices
from aedcli.video.writer import SINGLE_THREAD_PIXELS, VideoWriter, h264_available

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_TIMEOUT_S",
    "FRAME_SUFFIXES",
    "SINGLE_THREAD_PIXELS",
    "STREAM_SCHEMES",
    "OnError",
    "VideoInfo",
    "VideoSource",
    "VideoWriter",
    "batched",
    "frame_files",
    "frame_stacks",
    "h264_available",
    "iter_frames",
    "natural_key",
    "open_video",
    "stack_indices",
    "to_channels",
]
