"""The browser tab's icon, drawn here and served by the app itself.

Streamlit turns a ``:material/...:`` page icon into a link to Google's font server, so every
page view would reach outside the clinic; patient work must not phone home. A PIL image is
served from the app's own media endpoint instead.
"""

from __future__ import annotations

from functools import cache

from PIL import Image, ImageDraw

SIZE = 64


@cache
def page_icon() -> Image.Image:
    """A dark rounded square with a red outline on a grey disc: a scan with a finding."""
    icon = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((0, 0, SIZE - 1, SIZE - 1), radius=12, fill=(24, 28, 36, 255))
    draw.ellipse((10, 8, 54, 56), fill=(150, 155, 165, 255))
    draw.ellipse((30, 18, 46, 34), outline=(230, 40, 40, 255), width=4)
    return icon
