"""Compiled (numba) one-pass threshold sweep of one quantized map; used by :mod:`.fast`.

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
wins. These facts are checked against OpenCV by ``tests/localization/test_sweep.py``.

The sweeps, all over pixels sorted by value, each pixel visited once:

1. ``_fill``: priority flood from the border (bucket queue) gives the *filled* map ``r``: the
   smallest level at which a pixel is connected to the border through background (4-connected),
   ``r >= q``; the filled mask at ``L`` is ``r > L`` (grayscale hole filling). Pixels are popped
   in increasing ``r``, which is the order sweep 2 needs.
2. ``_top_level``: union-find on ``r > L`` going down the levels, 8-connected: its components are
   the filled top-level components, with extents, first pixels and ``2 * area`` from the windows
   (a 256-entry table of the 8-neighbourhood gives the windows completed by a pixel and the runs
   of neighbours that need a union). Gives V1 and the best top-level box of V2 at every level.
3. ``_holes``: union-find on the hole pixels only (``q <= L < r``), going up the levels,
   4-connected: hole extents, and each hole's Euler number (``1 - #islands`` inside it).

An *island* (a component inside a hole) is an outer contour that sweep 2 does not see. Its box
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
    """Priority flood: padded filled map ``r``, pixels in increasing ``r``, bucket starts."""
    height, width = q.shape
    qpad = np.zeros(size, dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            qpad[(y + 1) * wp + x + 1] = q[y, x]
    r = np.zeros(size, dtype=np.uint8)
    seen = np.ones(size, dtype=np.uint8)
    for y in range(1, height + 1):
        for x in range(1, width + 1):
            seen[y * wp + x] = 0
    heads = np.full(256, -1, dtype=np.int32)
    nxt = np.empty(size, dtype=np.int32)
    for y in range(1, height + 1):
        for x in range(1, width + 1):
            if y == 1 or y == height or x == 1 or x == width:
                p = y * wp + x
                seen[p] = 1
                v = qpad[p]
                r[p] = v
                nxt[p] = heads[v]
                heads[v] = p
    order = np.empty(height * width, dtype=np.int32)
    bucket = np.zeros(257, dtype=np.int64)
    count = 0
    for k in range(256):
        bucket[k] = count
        p = heads[k]
        while p >= 0:
            heads[k] = nxt[p]
            order[count] = p
            count += 1
            for n in (p - 1, p + 1, p - wp, p + wp):
                if seen[n] == 0:
                    seen[n] = 1
                    v = qpad[n]
                    if v < k:
                        v = k
                    r[n] = v
                    nxt[n] = heads[v]
                    heads[v] = n
            p = heads[k]
    bucket[256] = count
    return qpad, r, order, bucket


@njit(cache=True, nogil=True)
def _top_level(order, bucket, wp, size, height, width, gts, need):
    """Sweep 2: per level, IoU of the largest top-level contour's box and best top-level box."""
    starts, nruns, halves = _tables()
    ring = np.array([-wp - 1, -wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1], dtype=np.int64)
    col = np.empty(size, dtype=np.int32)
    for p in range(size):
        col[p] = p % wp - 1
    active = np.zeros(size, dtype=np.uint8)
    parent = np.empty(size, dtype=np.int32)
    weight = np.empty(size, dtype=np.int32)
    area2 = np.empty(size, dtype=np.int64)
    first = np.empty(size, dtype=np.int32)
    last = np.empty(size, dtype=np.int32)
    bx0 = np.empty(size, dtype=np.int32)
    bx1 = np.empty(size, dtype=np.int32)
    live = np.empty(size, dtype=np.int32)
    slot = np.empty(size, dtype=np.int32)
    cached = np.empty(size, dtype=np.float64)
    dirty = np.zeros(size, dtype=np.bool_)
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
                weight[p] = 1
                area2[p] = 0
                first[p] = p
                last[p] = p
                bx0[p] = x
                bx1[p] = x
                dirty[p] = True
                live[nlive] = p
                slot[p] = nlive
                nlive += 1
                continue
            root = _find(parent, p + ring[starts[code, 0]])
            for j in range(1, runs):
                other = _find(parent, p + ring[starts[code, j]])
                if other == root:
                    continue
                if weight[other] > weight[root]:
                    keep, gone = other, root
                else:
                    keep, gone = root, other
                last_live = live[nlive - 1]
                live[slot[gone]] = last_live
                slot[last_live] = slot[gone]
                nlive -= 1
                parent[gone] = keep
                weight[keep] += weight[gone]
                area2[keep] += area2[gone]
                first[keep] = min(first[keep], first[gone])
                last[keep] = max(last[keep], last[gone])
                bx0[keep] = min(bx0[keep], bx0[gone])
                bx1[keep] = max(bx1[keep], bx1[gone])
                root = keep
            parent[p] = root
            weight[root] += 1
            area2[root] += halves[code]
            if p < first[root]:
                first[root] = p
            if p > last[root]:
                last[root] = p
            if x < bx0[root]:
                bx0[root] = x
            if x > bx1[root]:
                bx1[root] = x
            dirty[root] = True
        # now the active pixels are r >= k, i.e. the filled mask of level L = k - 1
        if need[k] and nlive > 0:
            pick = live[0]
            best = NONE
            for j in range(nlive):
                c = live[j]
                if area2[c] > area2[pick] or (area2[c] == area2[pick] and first[c] > first[pick]):
                    pick = c
                if dirty[c]:
                    cached[c] = _iou(
                        bx0[c],
                        first[c] // wp - 1,
                        min(bx1[c] + 1, width - 1),
                        min(last[c] // wp, height - 1),
                        gts,
                    )
                    dirty[c] = False
                if cached[c] > best:
                    best = cached[c]
            largest[k] = cached[pick]
            best_top[k] = best
    return largest, best_top


@njit(cache=True, nogil=True)
def _holes(qpad, r, wp, size, height, width, gts, need):
    """Sweep 3: per level, best hole-contour box IoU, and the island bound (``NONE`` if none)."""
    # hole pixels: r > q, sorted by q (counting sort)
    counts = np.zeros(257, dtype=np.int64)
    total = 0
    for p in range(size):
        if r[p] > qpad[p]:
            counts[qpad[p] + 1] += 1
            total += 1
    hole_best = np.full(257, NONE)
    island = np.full(257, NONE)
    if total == 0:
        return hole_best, island
    for v in range(256):
        counts[v + 1] += counts[v]
    start = counts.copy()
    order = np.empty(total, dtype=np.int32)
    for p in range(size):
        if r[p] > qpad[p]:
            order[counts[qpad[p]]] = p
            counts[qpad[p]] += 1
    active = np.zeros(size, dtype=np.uint8)
    parent = np.empty(size, dtype=np.int32)
    weight = np.empty(size, dtype=np.int32)
    euler = np.empty(size, dtype=np.int32)
    bx0 = np.empty(size, dtype=np.int32)
    by0 = np.empty(size, dtype=np.int32)
    bx1 = np.empty(size, dtype=np.int32)
    by1 = np.empty(size, dtype=np.int32)
    live = np.empty(total, dtype=np.int32)
    nlive = 0
    for v in range(256):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            y = p // wp - 1
            x = p % wp - 1
            a_nw = np.int64(active[p - wp - 1])
            a_n = np.int64(active[p - wp])
            a_ne = np.int64(active[p - wp + 1])
            a_e = np.int64(active[p + 1])
            a_se = np.int64(active[p + wp + 1])
            a_s = np.int64(active[p + wp])
            a_sw = np.int64(active[p + wp - 1])
            a_w = np.int64(active[p - 1])
            active[p] = 1
            full = (
                (a_nw & a_n & a_w) + (a_n & a_ne & a_e) + (a_e & a_se & a_s) + (a_s & a_sw & a_w)
            )
            parent[p] = p
            weight[p] = 1
            euler[p] = 1 - (a_n + a_e + a_s + a_w) + full
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            root = p
            for n in (p - wp, p + 1, p + wp, p - 1):
                if active[n] == 0:
                    continue
                other = _find(parent, n)
                if other == root:
                    continue
                if weight[other] > weight[root]:
                    keep, gone = other, root
                else:
                    keep, gone = root, other
                parent[gone] = keep
                weight[keep] += weight[gone]
                euler[keep] += euler[gone]
                bx0[keep] = min(bx0[keep], bx0[gone])
                by0[keep] = min(by0[keep], by0[gone])
                bx1[keep] = max(bx1[keep], bx1[gone])
                by1[keep] = max(by1[keep], by1[gone])
                root = keep
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
                x0 = bx0[c] - 1
                y0 = by0[c] - 1
                x1 = min(bx1[c] + 2, width - 1)
                y1 = min(by1[c] + 2, height - 1)
                iou = _iou(x0, y0, x1, y1, gts)
                if iou > best:
                    best = iou
                if euler[c] < 1:
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
        q: ``(H, W)`` uint8 quantized map.
        gts: ``(K, 4)`` int64 ground-truth boxes.
        need: ``(257,)`` bool, the levels ``L = -1..255`` (index ``L + 1``) to evaluate.

    Returns:
        ``(largest, multi, island)``, three ``(257,)`` float64 arrays indexed by ``L + 1``: IoU of
        the V1 box (exact); best IoU over the outer contours of top-level components and all hole
        contours (V2 exact where ``island`` is ``NONE``); and the bound of the IoU of any island
        box (``NONE`` without islands). An empty mask has the IoU of the box ``(0, 0, 0, 0)``.
        Entries not in ``need`` are meaningless.
    """
    height, width = q.shape
    wp = width + 2
    size = (height + 2) * wp
    qpad, r, order, bucket = _fill(q, wp, size)
    largest, best_top = _top_level(order, bucket, wp, size, height, width, gts, need)
    hole_best, island = _holes(qpad, r, wp, size, height, width, gts, need)
    empty = _iou(0, 0, 0, 0, gts)
    multi = np.maximum(best_top, hole_best)
    for i in range(257):
        if best_top[i] == NONE:
            largest[i] = empty
            multi[i] = empty
    return largest, multi, island
