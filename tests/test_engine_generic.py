"""The engine knows no model: nothing in symcost/ names a family, a module of one, or its sizes;
families come from entry points, and a new family needs nothing from the engine."""

import io
import re
import tokenize
from pathlib import Path

import pytest
import sympy as sp

import symcost
from symcost import AspectTiler, Family, Input, Option, Serving, Stage, by_tile_count, op, seq

ENGINE = Path(symcost.__file__).resolve().parent
# model and module names, and sizes that only the families' configs may hold
FORBIDDEN = re.compile(
    r"deepseek|\bsam\b|\bclip\b|qwen|llama|gundam|\bocr\d?\b|\bvendor|got[_-]?ocr|stepfun|imgpad|"
    r"lighton|pixtral|mistral|paddle|ernie|siglip|navit|olmocr|pdftoppm|smart_resize|"
    r"\b(640|768|896|1280|1540|6848|129280|129,280)\b",
    re.IGNORECASE,
)
ALLOWED = {'"clip"'}  # NumPy's np.take(..., mode="clip")


def _tokens(path: Path):
    """Names, strings and comments of a Python file (code words, not substrings of others)."""
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT):
            yield tok.start[0], tok.string


def test_symcost_names_no_family():
    hits = [
        f"{p.relative_to(ENGINE)}:{line}: {text.strip()[:80]}"
        for p in sorted(ENGINE.rglob("*.py"))
        for line, text in _tokens(p)
        if text not in ALLOWED and FORBIDDEN.search(text)
    ]
    assert hits == []


def test_families_come_from_entry_points():
    assert set(symcost.families()) >= {"deepseek-ocr", "deepseek-ocr2"}
    for name in symcost.families():
        fam = symcost.get_family(name)
        assert fam.name == name and fam.stage_names and fam.inputs


def test_a_new_family_needs_nothing_from_the_engine(monkeypatch):
    """A toy family declared in a test (two inputs, one stage, a tiler): load, formula, compile,
    evaluate and the layout all work through the generic machinery."""
    w = Input("width", sp.Symbol("W", integer=True, positive=True), 1, 4096, None, "px", "width")
    h = Input("height", sp.Symbol("H", integer=True, positive=True), 1, 4096, None, "px", "height")
    b = Input("batch", sp.Symbol("B", integer=True, positive=True), 1, 64, 1, "requests", "batch")
    cols, rows = sp.symbols("cols rows", integer=True, positive=True)
    tiles = sp.Symbol("tiles", integer=True, nonnegative=True)

    def load(width_unit: str = "px"):
        tiler = AspectTiler(
            (w, h),
            (cols, rows),
            by_tile_count([(1, 2), (2, 1), (2, 2)]),
            tile=100,
            shortcut=lambda x, y: (x <= 100) & (y <= 100),
            shortcut_text="small",
        )

        def stage(v):
            return seq("encode", op("proj", "linear", tokens=v.batch * v.tiles * 10, d_in=8, d_out=4))

        return symcost.Model(
            family=FAMILY,
            options={},
            layout=tiler,
            named={tiles: lambda v: v.cols * v.rows},
            stages={
                "encode": Stage(
                    "encode", "one linear per tile", ("width", "height", "batch"), stage, ("weights",)
                )
            },
            weights=lambda: seq("model", seq("weights", op("proj", "linear", tokens=1, d_in=8, d_out=4))),
            kv_elems_per_token=0,
            runtime=symcost.get_runtime("hf"),
            settings=(("family", "toy"),),
        )

    FAMILY = Family(
        name="toy",
        summary="a toy",
        inputs=(w, h, b),
        options=(Option("width_unit", {"px": "pixels"}, "px", "unit"),),
        stage_names=("encode",),
        load=load,
        image=("width", "height"),
        serving=Serving("encode", "batch", "batch", "batch"),
        default_stage="encode",
    )
    monkeypatch.setattr(symcost.family, "_registry", lambda: {"toy": "tests.test_engine_generic:X"})
    monkeypatch.setattr(symcost.family, "_import", lambda target: FAMILY)
    m = symcost.load("toy")
    assert m.formula("encode", "flops", named=True) == 2 * 10 * 8 * 4 * b.symbol * tiles
    for (width, height), want in [((50, 50), 1), ((300, 100), 2), ((250, 260), 4)]:
        r = m.evaluate(width, height, batch=3)
        assert r["tiles"] == want and r["flops"] == 2 * 3 * want * 10 * 8 * 4
        got = m.compile("encode", ["flops"])(width, height, batch=3)
        assert int(got["flops"]) == r["flops"]


@pytest.mark.parametrize("family", symcost.families())
def test_a_model_prints_on_one_line(family):
    """The family and its declared options, as ``load`` resolved them; nothing else."""
    model = symcost.load(family)
    text = repr(model)
    assert "\n" not in text and len(text) < 300, text
    options = ", ".join(f"{o.name}={model.options[o.name]!r}" for o in model.family.options)
    assert text == f"<Model {family}: {options}>"


@pytest.mark.parametrize("cap", [64, 4096], ids=["table", "per-point"])
def test_a_computed_layout_runs_per_point(monkeypatch, cap):
    """A resize-style layout (every size its own grid): compile = evaluate = the closed form with
    the rule substituted, at every point, with the image inputs as arrays; with few output
    combinations (cap 64: 65^2) as a table evaluated once per combination, else per point."""
    import numpy as np

    from symcost import ComputedLayout, dense_table

    w = Input("width", sp.Symbol("W", integer=True, positive=True), 1, 4096, None, "px", "width")
    h = Input("height", sp.Symbol("H", integer=True, positive=True), 1, 4096, None, "px", "height")
    b = Input("batch", sp.Symbol("B", integer=True, positive=True), 1, 64, 1, "requests", "batch")
    gw, gh = sp.symbols("gw gh", integer=True, positive=True)
    patches = sp.Symbol("patches", integer=True, positive=True)

    def rule(x, y):  # round each side up to whole 14-px patches, at most cap a side
        return np.minimum(-(-x // 14), cap), np.minimum(-(-y // 14), cap)

    def computed(maxima, table):
        return ComputedLayout(
            (w, h),
            (gw, gh),
            rule,
            (sp.Min(sp.ceiling(w.symbol / 14), cap), sp.Min(sp.ceiling(h.symbol / 14), cap)),
            maxima,
            f"ceil(side / 14) patches a side, at most {cap}",
            *(dense_table(maxima) if table else (None, None)),
        )

    layout = computed((cap, cap), table=cap == 64)
    assert (layout.outcomes is None) == (cap == 4096)

    def stage(v):
        return seq("encode", op("proj", "linear", tokens=v.batch * v.patches, d_in=8, d_out=4))

    def load():
        return symcost.Model(
            family=FAMILY,
            options={},
            layout=layout,
            named={patches: lambda v: v.gw * v.gh},
            stages={"encode": Stage("encode", "a linear per patch", ("width", "height", "batch"), stage, ())},
            weights=lambda: seq("model"),
            kv_elems_per_token=0,
            runtime=symcost.get_runtime("hf"),
            settings=(("family", "toy-resize"),),
        )

    FAMILY = Family(
        name="toy-resize",
        summary="a toy with a resize rule",
        inputs=(w, h, b),
        options=(),
        stage_names=("encode",),
        load=load,
        image=("width", "height"),
        serving=Serving("encode", "batch", "batch", "batch"),
        default_stage="encode",
    )
    monkeypatch.setattr(symcost.family, "_registry", lambda: {"toy-resize": "tests:X"})
    monkeypatch.setattr(symcost.family, "_import", lambda target: FAMILY)
    m = symcost.load("toy-resize")
    rng = np.random.default_rng(0)
    ws, hs = rng.integers(1, 4097, 5000), rng.integers(1, 4097, 5000)
    for batch in (3, rng.integers(1, 65, 5000)):
        got = m.compile("encode", ["flops"])(ws, hs, batch=batch)
        want = 2 * np.asarray(batch) * np.minimum(-(-ws // 14), cap) * np.minimum(-(-hs // 14), cap) * 8 * 4
        assert (got["flops"] == want).all()
    closed = m.formula("encode", "flops", image=True)
    for x, y in [(1, 1), (14, 15), (895, 897), (4096, 30)]:
        r = m.evaluate(x, y, batch=2)
        assert r["flops"] == closed.subs({w.symbol: x, h.symbol: y, b.symbol: 2})
        assert (r["gw"], r["gh"]) == tuple(int(g) for g in m.tile_grid(x, y))
    if layout.outcomes is not None:  # each point's code names its row of the table
        assert (layout.outcomes[layout.codes(ws, hs)] == np.stack(rule(ws, hs), axis=1)).all()
        wrong = computed((cap - 1, cap), table=True)  # a maximum the rule passes
        with pytest.raises(ValueError, match="outside"):
            wrong.codes(ws, hs)
