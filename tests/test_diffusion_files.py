"""Diffusion-DPO's picture loading (fast, no model): mixed sizes resized and centre-cropped to the run's
resolution, deleted or unreadable files raising OSError so the loop can skip and count them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def test_pictures_of_mixed_sizes_are_resized_and_deleted_ones_skipped_in_the_loop(tmp_path: Path) -> None:
    from studio.train.diffusion_files import load_picture

    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((40, 90, 3), 200, dtype=np.uint8)).save(wide)
    tensor = load_picture(str(wide), 64)
    assert tuple(tensor.shape) == (3, 64, 64) and abs(float(tensor.mean()) - (200 / 127.5 - 1)) < 1e-4
    with pytest.raises(OSError):
        load_picture(str(tmp_path / "gone.png"), 64)
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(OSError):
        load_picture(str(tmp_path / "text.png"), 64)
