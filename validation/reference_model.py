"""DeepSeek-OCR v1 reference model assembled from transformers 5.23 building blocks.

Components (module paths of ``build_model()``):
  vision.sam        transformers' DeepSeek-OCR-2 SAM encoder configured as v1 (ViT-B, window 14, global
                    blocks 2,5,8,11, rel-pos, neck 256, ``downsample_channels=[512, 1024]`` as
                    ``proj.conv1``/``proj.conv2`` = the vendor's net_2/net_3).
  vision.clip       24 ``CLIPEncoderLayer`` (SDPA, quick_gelu) + pre_layrnorm + class token and a
                    [257,1024] position table, fed the SAM map as patch tokens.
  vision.projector  Linear(2048, 1280).  image_newline, view_seperator: the two layout vectors.
  language.model    transformers' DeepSeek-OCR-2 text model with v1's hyper-parameters (eager MHA).
  language.lm_head  untied Linear(1280, 129280), applied to every position.

Weights live on the meta device by default, so the 3.3 B parameters cost no memory.

NB: the SAM attention is transformers' SDPA variant: qkv, two rel-pos einsums on the unscaled q, the
    bias materialised as a float attn_mask for F.scaled_dot_product_attention, proj - the vendor's
    ops. Its get_rel_pos always calls F.interpolate (the vendor only when the table length differs);
    neither counter counts it.
NB: the SAM neck's LayerNorm is replaced by ``LayerNorm2d`` (mean/var from elementwise ops, as the
    vendor): transformers' version calls aten::layer_norm, which fvcore would count (5/elt).
NB: CLIP attention has separate q/k/v Linear (1024->1024 each) where the vendor has one fused
    qkv_proj (1024->3072): same parameters and MACs. transformers' CLIP layer calls self_attn through
    ``__call__`` (the vendor calls ``.forward``); attribution here uses op kinds, not the module level.
NB: CLIP's embeddings are computed by ``ClipL`` (class token + SAM tokens + the position table resized
    bicubic with antialias, as the vendor); transformers' CLIPVisionEmbeddings.forward would run the
    14x14 patch conv and resize without antialias. The interpolation is uncounted by both counters.
NB: transformers' text RoPE computes cos/sin once per model by broadcasting (uncounted); the vendor's
    LlamaAttention recomputes them in every layer as ``inv_freq @ positions`` (a bmm, 2*64*S FLOP).
    ``LayerRopeAttention`` does that per layer; the model-level rotary still runs and counts 0.
NB: transformers' eager experts loop is data-dependent (nonzero) and cannot run on meta. The experts
    use transformers' ``batched_mm`` implementation: each of the 6*S (token, expert) rows goes once
    through its expert's gate_up (1280->1792) and down (896->1280) as a bmm, i.e. the
    6*3*S*1280*896 MACs of the vendor's moe_infer (which runs per-expert Linear on sorted rows).
NB: the additive causal mask [1,1,S,past+S] is built explicitly and passed in 4D: transformers'
    create_causal_mask inspects position values (.item()), which meta tensors do not have.
"""

PARAM_COMPONENTS = (
    "sam",
    "clip",
    "projector",
    "image_newline",
    "view_seperator",
    "embed_tokens",
    "decoder_layer_dense",
    "decoder_layer_moe",
    "final_norm",
    "lm_head",
    "total",
)


def share_layer_weights(layers) -> None:
    """Every decoder layer after the second takes the second's parameters (the MoE layers all
    have the same shapes), before any is filled: one MoE layer's weights in memory instead of
    eleven (1.5 GB instead of 6 for the whole decoder). What a measurement here reads (FLOPs
    per op, live activation bytes) depends on shapes and routing, not on which random values
    each layer holds. The modules stay distinct: each keeps its own layer index for the cache."""
    source = dict(layers[1].named_parameters())
    for layer in layers[2:]:
        for module_name, module in layer.named_modules():
            for name in list(module._parameters):
                module._parameters[name] = source[f"{module_name}.{name}" if module_name else name]


def _build(factory_name, device, dtype, shared_layers=False):
    """Instantiate ``validation._modules.<factory_name>`` on ``device``; random weights off meta
    (``shared_layers``: see :func:`share_layer_weights`)."""
    import torch
    from transformers.initialization import no_init_weights

    from validation import _modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():  # allocate straight in dtype, skip slow inits
            model = getattr(_modules, factory_name)()
    finally:
        torch.set_default_dtype(previous)
    if shared_layers:  # the untouched storage of the other layers is freed, never written
        share_layer_weights(model.model.layers)
    if device != "meta":
        # The global RNG fills multi-threaded (an explicit Generator does not); fork_rng restores it.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for p in model.parameters():
                p.normal_(0.0, 0.02)
    return model.eval()


def build_model(device="meta", dtype=None):
    """The whole v1 model (vision, layout vectors, language model)."""
    import torch

    return _build("DeepseekOcrV1", device, dtype or torch.float32)


def build_vision(device="meta", dtype=None):
    """SAM -> CLIP -> projector; ``forward(pixels [B,3,P,P]) -> [B, (P/64)^2, 1280]``."""
    import torch

    return _build("VisionTower", device, dtype or torch.float32)


def build_language_model(device="meta", dtype=None, shared_layers=False):
    """Decoder + lm_head; ``forward(inputs_embeds [1,S,1280], past_key_values=None) -> logits``
    (``shared_layers``: the MoE layers share one set of weights, see :func:`share_layer_weights`)."""
    import torch

    return _build("LanguageModel", device, dtype or torch.float32, shared_layers)


def param_counts(model) -> dict[str, int]:
    """Parameter count per component of a ``build_model()`` model, keyed by PARAM_COMPONENTS."""

    def n(module):
        return sum(p.numel() for p in module.parameters())

    decoder = model.language.model
    return {
        "sam": n(model.vision.sam),
        "clip": n(model.vision.clip),
        "projector": n(model.vision.projector),
        "image_newline": model.image_newline.numel(),
        "view_seperator": model.view_seperator.numel(),
        "embed_tokens": n(decoder.embed_tokens),
        "decoder_layer_dense": n(decoder.layers[0]),
        "decoder_layer_moe": n(decoder.layers[1]),
        "final_norm": n(decoder.norm),
        "lm_head": n(model.language.lm_head),
        "total": n(model),
    }
