"""`[data.images]`: where a vision-language run's images and captions come from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImagesConfig:
    # "scenes" (shapes rendered with Pillow, captions generated from each scene), "digits"
    # (scikit-learn's bundled handwritten digits), or a .csv/.jsonl captions file whose rows name an
    # image file (relative to the captions file) and its caption: open_clip's layout
    source: str = ""
    image_key: str = "filepath"      # open_clip's --csv-img-key default
    caption_key: str = "title"       # open_clip's --csv-caption-key default
    label_key: str = ""              # a captions file's class column, for zero-shot accuracy ("" = none)
    licence: str = ""
    scenes: int = 6000               # scenes: how many to render
    # scenes: colour-shape pairs never shown in training; their scenes form the held-out test split
    held_out: list[str] = field(default_factory=lambda: ["red triangle", "green circle", "blue square"])
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])   # train, validation, test
    max_images: int = 0              # 0 = all
    skip_bad: bool = False           # an undecodable or missing image is skipped and counted, not an error
    # zero-shot prompts, "{}" the class name; empty = the source's own ("a {}" ... for scenes)
    templates: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) < 0 or not self.split[0]:
            raise ValueError(f"split: got {self.split}, expected three shares (train, validation, test) summing to 1")
        if self.scenes < 1 or self.max_images < 0:
            raise ValueError("scenes must be >= 1 and max_images >= 0")
        for t in self.templates:
            if t.count("{}") != 1:
                raise ValueError(f"templates: {t!r} must hold exactly one {{}} (the class name)")
