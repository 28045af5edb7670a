"""`symcost validate` names each row's component as `symcost eval` does: every name is one to one
with its reference column, and read back from `eval`'s numbers (components, op kinds, layers) it
gives the analytic value of that column. No torch: only the analytic side is compared."""

import re

import pytest

import symcost
from validation import lighton_ocr_compare, ocr2_compare
from validation.analytic import COUNTER_CONVENTIONS, decoder_columns, vision_columns
from validation.compare import component_name, namer
from validation.measure import _VIEW_COLUMNS, LAYER_PARTS


def _kinds(model, stage: str) -> dict[str, str]:
    """Full path -> op kind of every leaf of the stage's tree."""
    out: dict[str, str] = {}

    def walk(node, prefix):
        path = f"{prefix}.{node.name}" if prefix else node.name
        if node.kind is not None:
            out[path] = node.kind
        for child in node.children:
            walk(child, path)

    walk(model.tree(stage), "")
    return out


def resolve(name: str, model, stage: str, values: dict, convention: str) -> int:
    """The number a component name stands for, read from `Model.evaluate` alone."""
    result = model.evaluate(stage=stage, convention=convention, **values)
    comps = result["components"]
    if m := re.fullmatch(r"(.+) \((least|greatest) layer\)", name):  # analytic layers are alike
        return resolve(m[1], model, stage, values, convention)
    if m := re.fullmatch(r"(.+) / ([0-9]+)", name):
        total, n = resolve(m[1], model, stage, values, convention), int(m[2])
        assert total % n == 0, name
        return total // n
    if m := re.fullmatch(r"vision \(([a-z-]+)\)", name):
        return resolve("vision", model, stage, values, m[1])
    if name == "image_tokens (feature rows)":
        return result["image_tokens"]
    if " - " in name:
        first, *rest = name.split(" - ")
        return comps[first] - sum(comps[f"{first}.{r}"] for r in rest)
    if m := re.fullmatch(r"(.+)\[([a-z_]+)\]", name):
        kinds = _kinds(model, stage)
        return sum(n for p, n in comps.items() if kinds.get(p) == m[2] and p.startswith(m[1] + "."))
    if m := re.fullmatch(r"(.*)\{(.+)\}(.*)", name):
        return sum(comps[f"{m[1]}{part}{m[3]}"] for part in m[2].split(","))
    return comps[name] if name in comps else result[name]


def _check(columns: dict, name, model, stage, values, convention, measured=None):
    measured = list(columns) if measured is None else measured
    names = {c: name(c) for c in measured}
    assert len(set(names.values())) == len(names), "two columns, one name"
    for column, component in names.items():
        assert resolve(component, model, stage, values, convention) == columns[column], (column, component)
    return names


V1 = symcost.load("deepseek-ocr", preset="gundam")


@pytest.mark.parametrize("counter", ["torch", "fvcore"])
def test_deepseek_ocr_vision_names(counter):
    columns = vision_columns("gundam", 1280, 720, counter)
    measured = [f"{v}_{c}" for v in ("global", "crops") for c in _VIEW_COLUMNS]
    names = _check(
        columns,
        namer(V1, "vision", counter),
        V1,
        "vision",
        {"width": 1280, "height": 720},
        COUNTER_CONVENTIONS[counter][0],
        measured + ["vision_total", "vision_total_out_of_the_box"],
    )
    assert names["global_sam_total"] == "vision.global.sam"  # the example
    assert names["crops_sam_relpos"] == "vision.crops.sam[einsum]"


@pytest.mark.parametrize("stage,values", [("prefill", {"prompt_tokens": 12}), ("decode", {"kv_len": 100})])
def test_deepseek_ocr_decoder_names(stage, values):
    image = {"width": 1280, "height": 720} if stage == "prefill" else {}
    r = V1.evaluate(stage=stage, **image, **values)
    columns = (
        decoder_columns(r["prefill_tokens"], 0, "torch")
        if stage == "prefill"
        else decoder_columns(1, 100, "torch")
    )
    measured = [f"dense_L0_{p}" for p in LAYER_PARTS if not p.startswith("moe_")]
    measured += [f"moe_L1_{p}" for p in LAYER_PARTS] + ["moe_layers_min", "moe_layers_max", "lm_head"]
    measured += ["other_outside_layers_and_lm_head", "total_full_depth"]
    names = _check(columns, namer(V1, stage, "torch"), V1, stage, image | values, "torch", measured)
    root = "prefill" if stage == "prefill" else "decode.decoder"
    assert names["moe_L1_attn_proj"] == f"{root}.moe_layers.attn.{{q,k,v,o}}_proj / 11"


V2 = symcost.load("deepseek-ocr2")


STAGE_POINTS = [
    ("vision", {"width": 1600, "height": 900}),
    ("prefill", {"width": 1600, "height": 900, "prompt_tokens": 12}),
    ("decode", {"kv_len": 100}),
]


@pytest.mark.parametrize("stage,values", STAGE_POINTS)
def test_deepseek_ocr2_names(stage, values):
    if stage == "vision":
        columns = ocr2_compare.vision_columns(V2, values, "torch")
    else:
        columns = ocr2_compare.decoder_columns(V2, stage, values, "torch")
    _check(columns, namer(V2, stage, "torch"), V2, stage, values, "torch")


LIGHTON = symcost.load("lighton-ocr")


@pytest.mark.parametrize("stage,values", STAGE_POINTS)
def test_lighton_ocr_names(stage, values):
    if stage == "vision":
        columns = lighton_ocr_compare.vision_columns(LIGHTON, values, "torch")
    else:
        columns = lighton_ocr_compare.decoder_columns(LIGHTON, stage, values, "torch")
    names = lighton_ocr_compare.component_names(LIGHTON, stage)
    _check(columns, lambda c: names.get(c, c), LIGHTON, stage, values, "torch")


@pytest.mark.parametrize("module,model", [(ocr2_compare, V2), (lighton_ocr_compare, LIGHTON)])
def test_parameter_names(module, model):
    table = module.param_table(model)
    assert len({name for name, _ in table.values()}) == len(table)
    params = model.parameters()
    for column, (name, value) in table.items():
        base, _, n = name.partition(" / ")
        if m := re.fullmatch(r"(.*)\{(.+)\}", base):
            total = sum(params[f"{m[1]}{part}"] for part in m[2].split(","))
        else:
            total = params[base]
        assert total == value * int(n or 1), column


def test_unknown_columns_keep_their_names():
    assert component_name("w_tiles", "vision", 0, "torch-cpu") == "w_tiles"
