"""Pictures of inputs, stages and outputs: middle slices, central crops, side by side.

`preview_path` draws an image or a config (``convflow preview``);
`image_preview` and `plan_preview` give the panels without drawing them.
Reads only the chunks shown.
"""

from convflow.preview._views import (
    CROP,
    SHOW,
    Preview,
    image_preview,
    plan_preview,
    preview_config,
    preview_path,
)

__all__ = ["CROP", "SHOW", "Preview", "image_preview", "plan_preview", "preview_config", "preview_path"]
