"""Compiled (numba) threshold sweep of one quantized map; used by :mod:`.fast`.

Imported lazily by :mod:`camexp.localization.fast`: importing numba takes a while, and the first
call compiles the kernel (or loads it from numba's cache, ``cache=True``).

For every level ``L`` (mask ``q > L``) the reference needs, from ``findContours(RETR_TREE)``: the
boxes of all contours (V2) and the box of the contour of largest ``cv2.contourArea`` (V1). With
OpenCV's border following (Suzuki-Abe; the image is padded with zeros) the contours are exactly:

* one **outer** contour per 8-connected component of the mask; its box is the component's extent;
* one **hole** contour per 4-connected component of the background that does not reach the image
  border (a *hole*); its box is the hole's extent grown by one pixel on every side.

Polygon areas: the outer contour of a component that lies in no hole (*top-level*) encloses the
component with its holes filled, and its ``cv2.contourArea`` equals ``n4 + n3 / 2``, ``n4`` and
``n3`` the numbers of 2x2 pixel windows with 4 and with 3 pixels in that filled component. A
nested contour is enclosed by a top-level one, so the largest area is always a top-level contour,
and OpenCV lists the top-level contours in reverse raster order of their first pixel (tree
pre-order, siblings last-found first): among equal areas, the one whose first pixel comes last
wins. These facts are checked against OpenCV by ``tests/localization/test_sweep.py`` and
``test_sweep_kernel.py`` (through the reference).

The passes (each pixel visited a few times, no tracing):

1. ``_fill``: the *filled* map ``r``: the smallest level at which a pixel is connected to the
   border through background (4-connected), ``r >= q`` (grayscale hole filling, reconstruction
   by erosion: two raster scans and a FIFO). The filled mask at ``L`` is ``r > L``; pixels with
   ``r > q`` are the ones that lie in a hole at some level.
2. ``_sort``: counting sorts of the pixels by ``r`` and of the hole pixels by ``q``.
3. ``_top_level``: union-find on ``r > L`` going down the levels, 8-connected: its components are
   the filled top-level components, with extents, first pixels and ``2 * area`` from the windows
   (a 256-entry table of the 8-neighbourhood gives the windows completed by a pixel and the runs
   of neighbours that need a union). Gives V1 and the best top-level box of V2 at every level.
4. ``_holes``: union-find on the hole pixels only (``q <= L < r``), going up the levels,
   4-connected: hole extents, and each hole's Euler number (``1 - #islands`` inside it).

An *island* (a component inside a hole) is an outer contour that pass 3 does not see. Its box
lies inside its hole's contour box ``H``, so its IoU with a ground truth ``g`` is at most
``|H & g| / |g|``; ``level_ious`` returns that bound per level (over holes with islands) and the
caller traces the few levels where the bound leaves the V2 answer open.

IoU uses exact integer areas and one float64 division, like the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE = -1.0  # "no box at this level" in the per-level arrays


@njit(cache=True, nogil=True, inline="always")
def _find(parent, p):
    while parent[p] != p:
        grand = parent[parent[p]]
        parent[p] = grand
        p = grand
    return p


@njit(cache=True, nogil=True, inline="always")
def _union(parent, info, root, other):
    """Merge the components of roots ``root`` and ``other`` (the larger by ``info[:, 0]``
    absorbs the other; columns 1.. sum, min, max, min, max); return the merged root."""
    if info[other, 0] > info[root, 0]:
        other, root = root, other
    parent[other] = root
    info[root, 0] += info[other, 0]
    info[root, 1] += info[other, 1]
    info[root, 2] = min(info[root, 2], info[other, 2])
    info[root, 3] = max(info[root, 3], info[other, 3])
    info[root, 4] = min(info[root, 4], info[other, 4])
    info[root, 5] = max(info[root, 5], info[other, 5])
    return root


@njit(cache=True, nogil=True, inline="always")
def _iou(x0, y0, x1, y1, gts):
    best = 0.0
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for k in range(gts.shape[0]):
        ix = min(x1, gts[k, 2]) - max(x0, gts[k, 0]) + 1
        iy = min(y1, gts[k, 3]) - max(y0, gts[k, 1]) + 1
        inter = max(ix, 0) * max(iy, 0)
        union = area + (gts[k, 2] - gts[k, 0] + 1) * (gts[k, 3] - gts[k, 1] + 1) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best:
            best = iou
    return best


@njit(cache=True, nogil=True, inline="always")
def _cover(x0, y0, x1, y1, gts):
    """``max_g |box & g| / |g|``: bound of the IoU of any box inside ``box``."""
    best = 0.0
    for k in range(gts.shape[0]):
        ix = min(x1, gts[k, 2]) - max(x0, gts[k, 0]) + 1
        iy = min(y1, gts[k, 3]) - max(y0, gts[k, 1]) + 1
        inter = max(ix, 0) * max(iy, 0)
        bound = inter / ((gts[k, 2] - gts[k, 0] + 1) * (gts[k, 3] - gts[k, 1] + 1))
        if bound > best:
            best = bound
    return best


@njit(cache=True, nogil=True)
def _tables():
    """Per 8-neighbourhood code (bit i = ring neighbour i active, ring NW N NE E SE S SW W):
    the ring positions starting a run of active neighbours (at most 4), their number, and the
    number of 2x2 windows around the pixel with at least 2 of their 3 other pixels active."""
    starts = np.zeros((256, 4), dtype=np.int64)
    nruns = np.zeros(256, dtype=np.int64)
    halves = np.zeros(256, dtype=np.int64)
    for code in range(256):
        if code == 255:
            nruns[code] = 1
            starts[code, 0] = 1
        else:
            for i in range(8):
                if (code >> i) & 1 and not (code >> ((i + 7) % 8)) & 1:
                    starts[code, nruns[code]] = i
                    nruns[code] += 1
        bit = [(code >> i) & 1 for i in range(8)]
        # windows: {NW, N, W}, {N, NE, E}, {E, SE, S}, {S, SW, W}
        for a, b, c in ((0, 1, 7), (1, 2, 3), (3, 4, 5), (5, 6, 7)):
            if bit[a] + bit[b] + bit[c] >= 2:
                halves[code] += 1
    return starts, nruns, halves


@njit(cache=True, nogil=True)
def _fill(q, wp, size):
    """Filled map ``r`` (padded, frame 0): reconstruction by erosion of ``q`` from the border.

    ``r(p)`` is the smallest, over 4-connected paths from ``p`` out of the image, of the largest
    value on the path. Two raster scans and a FIFO for what they leave (Vincent's hybrid method).
    """
    height, width = q.shape
    qpad = np.zeros(size, dtype=np.uint8)
    r = np.zeros(size, dtype=np.uint8)
    for y in range(height):
        base = (y + 1) * wp + 1
        for x in range(width):
            qpad[base + x] = q[y, x]
    # forward scan: r = max(q, min(r above, r left)), the row above already final-ish
    for y in range(1, height + 1):
        prev = np.uint8(0)
        row = y * wp
        for p in range(row + 1, row + width + 1):
            up = r[p - wp]
            m = up if up < prev else prev
            qp = qpad[p]
            prev = qp if qp > m else m
            r[p] = prev
    queue = np.empty(size, dtype=np.int32)
    queued = np.zeros(size, dtype=np.uint8)
    tail = 0
    for y in range(height, 0, -1):
        nxt = np.uint8(0)
        row = y * wp
        for p in range(row + width, row, -1):
            down = r[p + wp]
            m = r[p]
            if down < m:
                m = down
            if nxt < m:
                m = nxt
            qp = qpad[p]
            v = qp if qp > m else m
            r[p] = v
            if (down > v and down > qpad[p + wp]) or (nxt > v and nxt > qpad[p + 1]):
                queue[tail] = p
                queued[p] = 1
                tail += 1
            nxt = v
    head = 0
    count = tail
    while count > 0:
        p = queue[head]
        head += 1
        if head == size:
            head = 0
        count -= 1
        queued[p] = 0
        v = r[p]
        for n in (p - wp, p - 1, p + 1, p + wp):
            if r[n] > v and r[n] > qpad[n]:
                r[n] = max(v, qpad[n])
                if queued[n] == 0:
                    queued[n] = 1
                    queue[tail] = n
                    tail += 1
                    if tail == size:
                        tail = 0
                    count += 1
    return qpad, r


@njit(cache=True, nogil=True)
def _sort(qpad, r, wp, height, width):
    """Interior pixels by increasing ``r``, and the hole pixels (``r > q``) by increasing ``q``,
    with their bucket starts ``(257,)``."""
    count_r = np.zeros(257, dtype=np.int64)
    count_h = np.zeros(257, dtype=np.int64)
    for y in range(1, height + 1):
        for p in range(y * wp + 1, y * wp + width + 1):
            count_r[r[p] + 1] += 1
            if r[p] > qpad[p]:
                count_h[qpad[p] + 1] += 1
    for v in range(256):
        count_r[v + 1] += count_r[v]
        count_h[v + 1] += count_h[v]
    bucket_r = count_r.copy()
    bucket_h = count_h.copy()
    order_r = np.empty(height * width, dtype=np.int32)
    order_h = np.empty(count_h[256], dtype=np.int32)
    for y in range(1, height + 1):
        for p in range(y * wp + 1, y * wp + width + 1):
            v = r[p]
            order_r[count_r[v]] = p
            count_r[v] += 1
            if v > qpad[p]:
                order_h[count_h[qpad[p]]] = p
                count_h[qpad[p]] += 1
    return order_r, bucket_r, order_h, bucket_h


@njit(cache=True, nogil=True)
def _top_level(order, bucket, col, wp, size, height, width, gts, need):
    """Sweep 2: per level, IoU of the largest top-level contour's box and best top-level box."""
    starts, nruns, halves = _tables()
    ring = np.array([-wp - 1, -wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1], dtype=np.int64)
    offs = np.zeros((256, 4), dtype=np.int64)  # offsets of the neighbours starting runs
    for c in range(256):
        for j in range(nruns[c]):
            offs[c, j] = ring[starts[c, j]]
    active = np.zeros(size, dtype=np.uint8)
    parent = np.empty(size, dtype=np.int32)
    # per root: weight (sizes added by unions only: a balance heuristic), 2 * area, first and
    # last pixel (raster order), smallest and largest column
    info = np.empty((size, 6), dtype=np.int32)
    live = np.empty(size, dtype=np.int32)
    nlive = 0
    largest = np.full(257, NONE)
    best_top = np.full(257, NONE)
    for k in range(255, -1, -1):
        for i in range(bucket[k + 1] - 1, bucket[k] - 1, -1):
            p = order[i]
            code = (
                np.int64(active[p - wp - 1])
                | (np.int64(active[p - wp]) << 1)
                | (np.int64(active[p - wp + 1]) << 2)
                | (np.int64(active[p + 1]) << 3)
                | (np.int64(active[p + wp + 1]) << 4)
                | (np.int64(active[p + wp]) << 5)
                | (np.int64(active[p + wp - 1]) << 6)
                | (np.int64(active[p - 1]) << 7)
            )
            active[p] = 1
            x = col[p]
            runs = nruns[code]
            if runs == 0:
                parent[p] = p
                info[p, 0] = 1
                info[p, 1] = 0
                info[p, 2] = p
                info[p, 3] = p
                info[p, 4] = x
                info[p, 5] = x
                live[nlive] = p
                nlive += 1
                continue
            root = _find(parent, p + offs[code, 0])
            for j in range(1, runs):
                other = _find(parent, p + offs[code, j])
                if other == root:
                    continue
                root = _union(parent, info, root, other)
            parent[p] = root
            info[root, 1] += halves[code]
            info[root, 2] = min(info[root, 2], p)
            info[root, 3] = max(info[root, 3], p)
            info[root, 4] = min(info[root, 4], x)
            info[root, 5] = max(info[root, 5], x)
        # the active pixels are now r >= k: the filled mask of level L = k - 1
        if need[k] and nlive > 0:
            kept = 0
            pick = live[0]
            best = NONE
            for j in range(nlive):
                c = live[j]
                if parent[c] != c:
                    continue
                live[kept] = c
                kept += 1
                if (
                    parent[pick] != pick
                    or info[c, 1] > info[pick, 1]
                    or (info[c, 1] == info[pick, 1] and info[c, 2] > info[pick, 2])
                ):
                    pick = c
                iou = _iou(
                    info[c, 4],
                    info[c, 2] // wp - 1,
                    min(info[c, 5] + 1, width - 1),
                    min(info[c, 3] // wp, height - 1),
                    gts,
                )
                if iou > best:
                    best = iou
            nlive = kept
            largest[k] = _iou(
                info[pick, 4],
                info[pick, 2] // wp - 1,
                min(info[pick, 5] + 1, width - 1),
                min(info[pick, 3] // wp, height - 1),
                gts,
            )
            best_top[k] = best
    return largest, best_top


@njit(cache=True, nogil=True)
def _holes(order, bucket, r, col, wp, size, height, width, gts, need):
    """Sweep 3: per level, best hole-contour box IoU, and the island bound (``NONE`` if none)."""
    hole_best = np.full(257, NONE)
    island = np.full(257, NONE)
    if order.shape[0] == 0:
        return hole_best, island
    active = np.zeros(size, dtype=np.uint8)
    parent = np.empty(size, dtype=np.int32)
    # per root: weight, Euler number, first and last pixel, smallest and largest column
    info = np.empty((size, 6), dtype=np.int32)
    live = np.empty(order.shape[0], dtype=np.int32)
    nlive = 0
    for v in range(256):
        for i in range(bucket[v], bucket[v + 1]):
            p = order[i]
            x = col[p]
            a_nw = np.int64(active[p - wp - 1])
            a_n = np.int64(active[p - wp])
            a_ne = np.int64(active[p - wp + 1])
            a_e = np.int64(active[p + 1])
            a_se = np.int64(active[p + wp + 1])
            a_s = np.int64(active[p + wp])
            a_sw = np.int64(active[p + wp - 1])
            a_w = np.int64(active[p - 1])
            active[p] = 1
            full = (a_nw & a_n & a_w) + (a_n & a_ne & a_e) + (a_e & a_se & a_s) + (a_s & a_sw & a_w)
            parent[p] = p
            info[p, 0] = 1
            info[p, 1] = 1 - (a_n + a_e + a_s + a_w) + full
            info[p, 2] = p
            info[p, 3] = p
            info[p, 4] = x
            info[p, 5] = x
            root = p
            for n in (p - wp, p + 1, p + wp, p - 1):
                if active[n] == 0:
                    continue
                other = _find(parent, n)
                if other == root:
                    continue
                root = _union(parent, info, root, other)
            live[nlive] = p
            nlive += 1
        if nlive == 0:
            continue
        # keep the roots still inside holes (a hole leaves, whole, at its level r)
        kept = 0
        for j in range(nlive):
            c = live[j]
            if parent[c] == c and r[c] > v:
                live[kept] = c
                kept += 1
        nlive = kept
        if need[v + 1] and nlive > 0:
            best = NONE
            bound = NONE
            for j in range(nlive):
                c = live[j]
                x0 = info[c, 4] - 1
                y0 = info[c, 2] // wp - 2
                x1 = min(info[c, 5] + 2, width - 1)
                y1 = min(info[c, 3] // wp + 1, height - 1)
                iou = _iou(x0, y0, x1, y1, gts)
                if iou > best:
                    best = iou
                if info[c, 1] < 1:
                    cover = _cover(x0, y0, x1, y1, gts)
                    if cover > bound:
                        bound = cover
            hole_best[v + 1] = best
            island[v + 1] = bound
    return hole_best, island


@njit(cache=True, nogil=True)
def level_ious(q, gts, need):
    """Per-level IoUs of one quantized map.

    Args:
        q: ``(H, W)`` uint8 quantized map (C-contiguous).
        gts: ``(K, 4)`` int64 ground-truth boxes (C-contiguous).
        need: ``(257,)`` bool, the levels ``L = -1..255`` (index ``L + 1``) to evaluate.

    Returns:
        ``(largest, multi, island)``, three ``(257,)`` float64 arrays indexed by ``L + 1``: IoU of
        the V1 box (exact); best IoU over the outer contours of top-level components and all hole
        contours (the V2 IoU, exact where ``island`` is ``NONE``); and a bound of the IoU of any
        island's box (``NONE`` without islands). An empty mask has the IoU of the box
        ``(0, 0, 0, 0)``. Entries not in ``need`` are meaningless.
    """
    height, width = q.shape
    wp = width + 2
    size = (height + 2) * wp
    col = np.empty(size, dtype=np.int32)
    for y in range(height + 2):
        for x in range(wp):
            col[y * wp + x] = x - 1
    qpad, r = _fill(q, wp, size)
    order_r, bucket_r, order_h, bucket_h = _sort(qpad, r, wp, height, width)
    largest, best_top = _top_level(order_r, bucket_r, col, wp, size, height, width, gts, need)
    hole_best, island = _holes(order_h, bucket_h, r, col, wp, size, height, width, gts, need)
    empty = _iou(0, 0, 0, 0, gts)
    multi = np.maximum(best_top, hole_best)
    for i in range(257):
        if best_top[i] == NONE:
            largest[i] = empty
            multi[i] = empty
    return largest, multi, island
