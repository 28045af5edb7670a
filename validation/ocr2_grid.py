"""DeepSeek-OCR-2's tile grid over many (W, H) at once, computed by the image processor's own code.

``processor_grid`` calls the same thing ``validation.ocr2.tile_grid`` calls for one image -
``get_optimal_tiled_canvas`` unwrapped from its ``lru_cache``, behind ``_preprocess``'s
``max(W, H) > tile_size`` shortcut - once per pair, split over worker processes by width. No rule of
ours is involved: this is the reference an analytic tile rule is checked against.

``grid_mismatches`` puts the family's vectorised ``tile_grid`` next to it.

Cost: the processor's Python walk takes about 3 us per pair, so all of [1, 4096]^2 (16.8 M pairs) is
about 50 s of CPU: ~25-50 s on 2 cores (the import is done once, before the workers fork).
"""

import os
import time


def _columns(args):
    """(cols, rows) rows of the grid for a block of widths; runs in a worker process."""
    import numpy as np

    from validation.ocr2 import _image_processor, _tiled_canvas

    widths, heights = args
    canvas = _tiled_canvas()
    tile = _image_processor().tile_size
    cols = np.ones((len(widths), len(heights)), dtype=np.int8)
    rows = np.ones((len(widths), len(heights)), dtype=np.int8)
    for i, w in enumerate(widths):
        # the shortcut of _preprocess; otherwise no tiles, reported as (1, 1)
        grid = [canvas(h, w) if max(w, h) > tile else (1, 1) for h in heights]
        cols[i], rows[i] = np.array(grid, dtype=np.int8).reshape(-1, 2).T
    return cols, rows


def by_width(block, widths, heights, processes=None, extra=()):
    """``block((*extra, some_widths, heights))`` -> arrays of shape (len(some_widths), len(heights)),
    run over interleaved blocks of widths (equal work per block) in forked worker processes and
    stitched back in order: the same arrays for any number of processes. Import what ``block``
    needs before calling, so the workers inherit it."""
    import multiprocessing

    import numpy as np

    widths, heights = [int(w) for w in widths], [int(h) for h in heights]
    processes = processes or os.cpu_count() or 1
    blocks = max(1, min(len(widths), 8 * processes))
    chunks = [(*extra, widths[k::blocks], heights) for k in range(blocks)]
    if processes == 1:
        parts = [block(c) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(block, chunks)
    out = tuple(np.empty((len(widths), len(heights)), dtype=a.dtype) for a in parts[0])
    for k, part in enumerate(parts):
        for o, a in zip(out, part):
            o[k::blocks] = a
    return out


def processor_grid(widths, heights, processes=None, columns=_columns):
    """``(cols, rows)``: int8 arrays of shape (len(widths), len(heights)); entry [i, j] is the tile grid
    of a ``widths[i]`` x ``heights[j]`` image ((1, 1) = no tiles), as ``tile_grid`` would return it.

    ``columns((widths, heights)) -> (cols, rows)``: one block's grid, run in a worker process (a
    module-level function); another family's processor rule goes here."""
    columns(([], []))  # import transformers here, once: forked workers inherit it
    return by_width(columns, widths, heights, processes)


def compare_grids(analytic, reference, widths, heights, show: int = 10) -> dict:
    """Two grid rules on every pair of ``widths`` x ``heights``, each ``rule(widths, heights) ->
    (cols, rows)`` arrays of shape (len(widths), len(heights)): pair count, mismatch count, the first
    ``show`` mismatches as ``(W, H, analytic, reference)``, and the seconds each side took."""
    import numpy as np

    widths, heights = np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64)
    start = time.perf_counter()
    cols, rows = analytic(widths, heights)
    analytic_s = time.perf_counter() - start
    start = time.perf_counter()
    ref_cols, ref_rows = reference(widths, heights)
    processor_s = time.perf_counter() - start
    bad = np.argwhere((cols != ref_cols) | (rows != ref_rows))
    return {
        "pairs": int(cols.size),
        "mismatches": len(bad),
        "first": [
            (
                int(widths[i]),
                int(heights[j]),
                (int(cols[i, j]), int(rows[i, j])),
                (int(ref_cols[i, j]), int(ref_rows[i, j])),
            )
            for i, j in bad[:show]
        ],
        "analytic_s": analytic_s,
        "processor_s": processor_s,
    }


def grid_mismatches(model, widths, heights, processes=None, show: int = 10, columns=_columns) -> dict:
    """``model.tile_grid`` (the family's vectorised rule) against ``processor_grid`` (with ``columns``)
    on every pair of ``widths`` x ``heights`` (see ``compare_grids``)."""
    return compare_grids(
        lambda w, h: model.tile_grid(w[:, None], h[None, :]),
        lambda w, h: processor_grid(w, h, processes, columns),
        widths,
        heights,
        show,
    )
