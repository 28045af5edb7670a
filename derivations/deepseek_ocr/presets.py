"""DeepSeek-OCR resolution presets and vision modes (the vendor's infer() arguments)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Preset", "PRESETS", "VISION_MODES"]


@dataclass(frozen=True)
class Preset:
    name: str
    base_size: int  # global view side in crop mode (and in vLLM no-crop)
    image_size: int  # tile side in crop mode; global view side in the HF no-crop path
    crop_mode: bool
    summary: str

    def global_px(self, vision_mode: str) -> int:
        """Side of the global view: HF's crop_mode=False builds it at image_size, everything
        else (crop mode, the small-image shortcut, vLLM's no-crop) at base_size."""
        return self.image_size if vision_mode == "nocrop-hf" else self.base_size


PRESETS = {
    p.name: p
    for p in (
        Preset("tiny", 512, 512, False, "512 global view, no tiles"),
        Preset("small", 640, 640, False, "640 global view, no tiles"),
        Preset("base", 1024, 1024, False, "1024 global view, no tiles"),
        Preset("large", 1280, 1280, False, "1280 global view, no tiles"),
        Preset("gundam", 1024, 640, True, "1024 global view + 640 tiles"),
        # NB: the vendor's HF code crashes on Gundam-M (tiles cut at 640, layout built for 1024);
        # this is the vLLM semantics: 1024 tiles, the tiler given image_size=1024.
        Preset("gundam-m", 1280, 1024, True, "1280 global view + 1024 tiles (vLLM semantics)"),
    )
}

# mode -> the vendor call it reproduces (for the crop presets; Tiny-Large never tile, so every
# mode is the same computation there)
VISION_MODES = {
    "crops": "global view at base_size + dynamic tiles: HF infer() and vLLM with crop_mode=True",
    "nocrop": "global view at base_size only: the small-image shortcut (both sides <= 640) and "
    "vLLM with crop_mode=False",
    "nocrop-hf": "global view at image_size only: HF infer() with crop_mode=False (Gundam: a "
    "640 view, resized without keeping the aspect ratio; Gundam-M: 1024, padded)",
}
