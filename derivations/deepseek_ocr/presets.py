"""DeepSeek-OCR resolution presets (ARCHITECTURE.md §2)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Preset", "PRESETS"]


@dataclass(frozen=True)
class Preset:
    name: str
    base_size: int   # global view side in crop mode
    image_size: int  # tile side in crop mode; global view side in no-crop mode
    crop_mode: bool
    summary: str

    @property
    def global_px(self) -> int:
        return self.base_size if self.crop_mode else self.image_size


PRESETS = {p.name: p for p in (
    Preset("tiny", 512, 512, False, "512 global view, no tiles"),
    Preset("small", 640, 640, False, "640 global view, no tiles"),
    Preset("base", 1024, 1024, False, "1024 global view, no tiles"),
    Preset("large", 1280, 1280, False, "1280 global view, no tiles"),
    Preset("gundam", 1024, 640, True, "1024 global view + 640 tiles"),
    # NB: the vendor's HF code crashes on Gundam-M (tiles cut at 640, layout built for 1024);
    # this is the vLLM semantics: 1024 tiles, the tiler given image_size=1024.
    Preset("gundam-m", 1280, 1024, True, "1280 global view + 1024 tiles (vLLM semantics)"),
)}
