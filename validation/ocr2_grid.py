"""DeepSeek-OCR-2's tile grid over many (W, H) at once, computed by the image processor's own code.

``processor_grid`` calls the same thing ``validation.ocr2.tile_grid`` calls for one image -
``get_optimal_tiled_canvas`` unwrapped from its ``lru_cache``, behind ``_preprocess``'s
``max(W, H) > tile_size`` shortcut - once per pair, split over worker processes by width. No rule of
ours is involved: this is the reference an analytic tile rule is checked against.

Cost: about 1 us per pair per core, so all of [1, 4096]^2 (16.8 M pairs) takes seconds, not minutes.
"""

import os


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
        for j, h in enumerate(heights):
            if max(w, h) > tile:  # the shortcut of _preprocess; otherwise no tiles, reported as (1, 1)
                cols[i, j], rows[i, j] = canvas(h, w)
    return cols, rows


def processor_grid(widths, heights, processes=None):
    """``(cols, rows)``: int8 arrays of shape (len(widths), len(heights)); entry [i, j] is the tile grid
    of a ``widths[i]`` x ``heights[j]`` image ((1, 1) = no tiles), as ``tile_grid`` would return it."""
    import multiprocessing

    import numpy as np

    widths, heights = [int(w) for w in widths], [int(h) for h in heights]
    processes = processes or os.cpu_count() or 1
    blocks = max(1, min(len(widths), 8 * processes))
    chunks = [(widths[k::blocks], heights) for k in range(blocks)]  # interleaved: equal work per block
    if processes == 1:
        parts = [_columns(c) for c in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_columns, chunks)
    cols = np.empty((len(widths), len(heights)), dtype=np.int8)
    rows = np.empty_like(cols)
    for k, (c, r) in enumerate(parts):
        cols[k::blocks], rows[k::blocks] = c, r
    return cols, rows
