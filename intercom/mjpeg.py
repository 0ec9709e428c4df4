"""A live frame as a JPEG, for the MJPEG fallback (video over the panel's HTTPS)."""

from __future__ import annotations

import io
from typing import Any

import av

QUALITY = 70


def jpeg_of(frame: Any) -> bytes:
    """Encode one LiveFrame (a PIL image, or an I420 array from the Pi camera) as a JPEG."""
    image = frame.data
    if frame.kind == "yuv420":
        image = av.VideoFrame.from_ndarray(frame.data, format="yuv420p").to_image()
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=QUALITY)
    return out.getvalue()
