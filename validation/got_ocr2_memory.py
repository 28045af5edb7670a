"""GOT-OCR2 peak activation memory: the family's liveness walk against transformers' own module under
``validation.memory.LiveBytes`` (every storage an op allocates, freed when it dies).

What is run is the model's own code: ``get_image_features`` for vision; ``forward`` with
``inputs_embeds`` and ``use_cache=True`` (an empty ``DynamicCache`` for prefill, one of ``past`` tokens
for decode) and ``logits_to_keep`` 0 or 1. Inputs (pixels, embeddings, an input cache) are
pre-existing; the peak is what the run adds above them (``validation.memory``'s definition).

Device: ``meta`` runs the full-size model in bf16 in seconds (every allocation is made, with its size,
and none holds data; SDPA is routed to the CPU kernel's op, ``validation.measure._cpu_sdpa_on_meta``);
``cpu`` runs real tensors (random weights). The CPU cases are reduced (fewer layers, 256-px views) and
fp32 (bf16 matmuls are ~100x slower on CPUs without AVX512-BF16): they show that the meta run allocates
what a real run does.

NB: left out of the model (each below the stage's peak): the probabilities each SAM layer keeps through
    its MLP (``attn_weights``), the copies einsum makes of a strided q, the non-contiguous projector
    input's copy; CPU kernel scratch, which LiveBytes does not see either.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import replace

from . import got_ocr2 as got
from . import memory

__all__ = ["CASES", "Runner", "runner", "measured", "analytic"]

_SMALL_VISION = {"image_size": 256, "num_hidden_layers": 2, "global_attn_indexes": [1]}
# name: (kind, device, dtype, reduced config: vision keys and text "layers", case parameters)
CASES = {
    "vision_1024": ("vision", "meta", "bf16", {}, {"views": 1}),
    "vision_1024_13views": ("vision", "meta", "bf16", {}, {"views": 13}),
    "prefill_296_last": ("prefill", "meta", "bf16", {}, {"seq": 296, "logits": "last"}),
    "prefill_3368_all": ("prefill", "meta", "bf16", {}, {"seq": 3368, "logits": "all"}),
    "decode_b8_l4096": ("decode", "meta", "bf16", {}, {"batch": 8, "past": 4096}),
    "cpu_vision_256_2views": ("vision", "cpu", "fp32", _SMALL_VISION, {"views": 2}),
    "cpu_prefill_64_all": ("prefill", "cpu", "fp32", {"layers": 2}, {"seq": 64, "logits": "all"}),
    "cpu_decode_b2_l128": ("decode", "cpu", "fp32", {"layers": 2}, {"batch": 2, "past": 128}),
}


def _split(reduced: dict) -> tuple[dict, int | None]:
    """(vision overrides, text layers) of a CASES config."""
    return {k: v for k, v in reduced.items() if k != "layers"}, reduced.get("layers")


class Runner:
    """The (reduced) module on a device; each case method returns ``(run, preexisting tensors)``, as
    ``validation.memory.measure`` takes them."""

    def __init__(self, device: str, dtype: str, reduced: dict):
        import torch

        vision, layers = _split(reduced)
        config = got.hf_config(**vision)
        if layers is not None:
            config.text_config.num_hidden_layers = layers
            config.text_config.layer_types = config.text_config.layer_types[:layers]
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
        part = (
            ("model.vision_tower", "model.multi_modal_projector")
            if layers is None
            else ("model.language_model",)
        )
        self.model = got.build_model(device, self.dtype, config=config, real=part)

    def _randn(self, *shape, seed: int):
        import torch

        if self.device == "meta":
            return torch.empty(*shape, device="meta", dtype=self.dtype)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(self.dtype)

    def case(self, views: int):
        px = self.model.config.vision_config.image_size
        pixels = self._randn(views, 3, px, px, seed=1)
        return (lambda: self.model.model.get_image_features(pixels).pooler_output), [pixels]

    def _forward(self, embeds, cache, logits):
        keep = 0 if logits == "all" else 1
        return lambda: (
            self.model(
                inputs_embeds=embeds, past_key_values=cache, use_cache=True, logits_to_keep=keep
            ).logits
        )

    def prefill_case(self, seq: int, logits: str):
        embeds = self._randn(1, seq, self.model.config.text_config.hidden_size, seed=2)
        return self._forward(embeds, None, logits), [embeds]

    def decode_case(self, batch: int, past: int):
        from .measure import dynamic_cache

        embeds = self._randn(batch, 1, self.model.config.text_config.hidden_size, seed=3)
        cache = dynamic_cache(self.model.config.text_config, past, embeds)
        pre = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return self._forward(embeds, cache, "last"), [embeds, *pre]


@functools.lru_cache(maxsize=4)
def runner(device: str, dtype: str, reduced: str) -> Runner:
    """One shared Runner per (device, dtype, reduced config as JSON)."""
    return Runner(device, dtype, json.loads(reduced))


def measured(name: str, device: str | None = None) -> int:
    """The live-tensor peak (bytes) of a case, on its (reduced) module, on its device or ``device``."""
    import gc

    import torch

    from .measure import _cpu_sdpa_on_meta

    kind, case_device, dtype, reduced, params = CASES[name]
    device = device or case_device
    r = runner(device, dtype, json.dumps(reduced, sort_keys=True))
    run, pre = {"vision": r.case, "prefill": r.prefill_case, "decode": r.decode_case}[kind](**params)
    tracker = memory.LiveBytes(preexisting=pre)
    del pre  # an input cache the run replaces is freed during it, as in serving
    gc.collect()
    sdpa = _cpu_sdpa_on_meta() if device == "meta" else contextlib.nullcontext()
    with torch.no_grad(), sdpa, tracker:
        run()
    return tracker.peak_bytes


def analytic(name: str) -> int:
    """The family's activation peak (bytes) for the same case: its trees at the (reduced) config."""
    from derivations.common.decoder import decoder
    from derivations.common.vlm import execution
    from derivations.got_ocr2 import CONFIG, DECODER, HF
    from derivations.got_ocr2.vision import VisionConfig, tower
    from symcost.dtypes import building, precision

    kind, _, dtype, reduced, params = CASES[name]
    vision, layers = _split(reduced)
    with building(precision(dtype)):
        if kind == "vision":
            cfg = VisionConfig.from_hf(CONFIG["vision_config"] | vision, CONFIG["hidden_size"])
            return int(tower(cfg, params["views"]).cost.peak_bytes)
        ex, _ = execution("hf", None, params.get("logits", "last"), "expected", HF)
        dec = DECODER if layers is None else replace(DECODER, layers=layers, dense_layers=layers)
        if kind == "prefill":
            return int(decoder(dec, ex, 1, params["seq"], 0).cost.peak_bytes)
        return int(decoder(dec, ex, params["batch"], 1, params["past"]).cost.peak_bytes)
