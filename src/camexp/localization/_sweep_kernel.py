"""Compiled (numba) one-pass threshold sweep of one quantized map; see :mod:`.fast`.

Imported lazily by :mod:`camexp.localization.fast` (importing numba takes a while and compiles or
loads the cached machine code on first use). Everything here works on the map padded with one
pixel of background on each side, indexed linearly (``p = (y + 1) * (W + 2) + x + 1``), so that
the linear order is OpenCV's raster order and neighbours never need bounds checks.

Three union-find sweeps over the pixels sorted by value (counting sort, 256 buckets) give, for
every level ``L`` (mask ``q > L``), what the reference gets from ``findContours``:

* ``_holes_and_fill``: background ``q <= L`` added in increasing order, 4-connected, the padding
  frame being one component. The components other than the frame's are the mask's holes
  (OpenCV's hole contours, box = hole extent grown by one pixel). The level at which a pixel joins
  the frame component is its *filled value* ``r`` (``r > L`` iff the pixel lies inside an outer
  contour of the mask at level ``L``, i.e. grayscale hole filling).
* ``_outer_boxes``: foreground ``q > L`` added in decreasing order, 8-connected: every outer
  contour's box (one per component, OpenCV's boxes of the outer borders).
* ``_largest``: the filled map ``r`` swept the same way. Its components are the outer contours
  that lie in no hole (filled), and their polygon area (``cv2.contourArea``) is exact from 2x2
  window counts: ``#windows with 4 pixels in + #windows with 3 pixels in / 2``. The largest-area
  contour of the mask is always one of them (a nested contour is inside its top-level one); among
  equal areas OpenCV lists top-level contours in reverse raster order of their first pixel, so the
  one with the last first pixel wins.

IoU uses exact integer areas and one float64 division, as the reference does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE = -1.0  # "no box at this level" in the per-level IoU arrays


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


@njit(cache=True, nogil=True)
def _counting_sort(values, wp, height, width):
    """Padded indices of the ``(H, W)`` values sorted ascending, and bucket starts (257,)."""
    counts = np.zeros(257, dtype=np.int64)
    for y in range(height):
        for x in range(width):
            counts[values[y, x] + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    start = counts.copy()
    order = np.empty(height * width, dtype=np.int32)
    for y in range(height):
        for x in range(width):
            v = values[y, x]
            order[counts[v]] = (y + 1) * wp + x + 1
            counts[v] += 1
    return order, start


@njit(cache=True, nogil=True)
def _holes_and_fill(q, gts, need):
    """Best hole-box IoU per level and the filled map ``r``.

    Returns:
        hole_best: ``(257,)`` float64, index ``L + 1`` for ``L = -1..255`` (evaluated where
            ``need``), best IoU over the hole contours' boxes, ``NONE`` without holes.
        filled: ``(H, W)`` uint8 ``r``.
    """
    height, width = q.shape
    wp = width + 2
    size = (height + 2) * wp
    order, start = _counting_sort(q, wp, height, width)
    parent = np.full(size, -1, dtype=np.int32)
    for x in range(wp):
        parent[x] = 0
        parent[size - 1 - x] = 0
    for y in range(height + 2):
        parent[y * wp] = 0
        parent[y * wp + wp - 1] = 0
    weight = np.zeros(size, dtype=np.int32)
    nxt = np.empty(size, dtype=np.int32)
    tail = np.empty(size, dtype=np.int32)
    bx0 = np.empty(size, dtype=np.int32)
    by0 = np.empty(size, dtype=np.int32)
    bx1 = np.empty(size, dtype=np.int32)
    by1 = np.empty(size, dtype=np.int32)
    live = np.empty(size, dtype=np.int32)
    slot = np.empty(size, dtype=np.int32)
    cached = np.empty(size, dtype=np.float64)
    dirty = np.zeros(size, dtype=np.bool_)
    nlive = 0
    filled = np.empty((height, width), dtype=np.uint8)
    hole_best = np.full(257, NONE)
    offsets = (-1, 1, -wp, wp)
    for v in range(256):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            y = p // wp - 1
            x = p - (y + 1) * wp - 1
            parent[p] = p
            weight[p] = 1
            nxt[p] = -1
            tail[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            dirty[p] = True
            live[nlive] = p
            slot[p] = nlive
            nlive += 1
            root = p
            for o in offsets:
                n = p + o
                if parent[n] < 0:
                    continue
                other = _find(parent, n)
                if other == root:
                    continue
                if other == 0 or (root != 0 and weight[other] > weight[root]):
                    keep, gone = other, root
                else:
                    keep, gone = root, other
                # drop `gone` from the live list
                last = live[nlive - 1]
                live[slot[gone]] = last
                slot[last] = slot[gone]
                nlive -= 1
                parent[gone] = keep
                if keep == 0:
                    # the component reaches the frame at this level: its pixels get r = v
                    m = gone
                    while m >= 0:
                        filled[m // wp - 1, m % wp - 1] = v
                        m = nxt[m]
                else:
                    weight[keep] += weight[gone]
                    nxt[tail[keep]] = gone
                    tail[keep] = tail[gone]
                    bx0[keep] = min(bx0[keep], bx0[gone])
                    by0[keep] = min(by0[keep], by0[gone])
                    bx1[keep] = max(bx1[keep], bx1[gone])
                    by1[keep] = max(by1[keep], by1[gone])
                    dirty[keep] = True
                root = keep
        if need[v + 1] and nlive > 0:
            best = NONE
            for j in range(nlive):
                h = live[j]
                if dirty[h]:
                    cached[h] = _iou(
                        bx0[h] - 1,
                        by0[h] - 1,
                        min(bx1[h] + 2, width - 1),
                        min(by1[h] + 2, height - 1),
                        gts,
                    )
                    dirty[h] = False
                if cached[h] > best:
                    best = cached[h]
            hole_best[v + 1] = best
    return hole_best, filled


@njit(cache=True, nogil=True)
def _foreground(values, gts, need, largest):
    """Sweep ``values > L`` (8-connected) downwards over the levels.

    With ``largest=False``: best IoU over all components' boxes per level (outer contours). With
    ``largest=True``: IoU of the box of the component of largest polygon area (ties: last first
    pixel in raster order). Index ``L + 1`` for ``L = -1..255``; ``NONE`` for an empty mask.
    """
    height, width = values.shape
    wp = width + 2
    size = (height + 2) * wp
    order, start = _counting_sort(values, wp, height, width)
    parent = np.full(size, -1, dtype=np.int32)
    weight = np.zeros(size, dtype=np.int32)
    area2 = np.zeros(size, dtype=np.int64)
    first = np.empty(size, dtype=np.int32)
    bx0 = np.empty(size, dtype=np.int32)
    by0 = np.empty(size, dtype=np.int32)
    bx1 = np.empty(size, dtype=np.int32)
    by1 = np.empty(size, dtype=np.int32)
    live = np.empty(size, dtype=np.int32)
    slot = np.empty(size, dtype=np.int32)
    cached = np.empty(size, dtype=np.float64)
    dirty = np.zeros(size, dtype=np.bool_)
    nlive = 0
    out = np.full(257, NONE)
    ring = (-wp - 1, -wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1)
    for v in range(255, -1, -1):
        for i in range(start[v], start[v + 1]):
            p = order[i]
            y = p // wp - 1
            x = p - (y + 1) * wp - 1
            parent[p] = p
            weight[p] = 1
            first[p] = p
            bx0[p] = x
            bx1[p] = x
            by0[p] = y
            by1[p] = y
            dirty[p] = True
            live[nlive] = p
            slot[p] = nlive
            nlive += 1
            root = p
            if largest:
                # 2x2 windows with p as a corner that now have 3 or 4 pixels: +1 half each
                a_nw = parent[p - wp - 1] >= 0
                a_n = parent[p - wp] >= 0
                a_ne = parent[p - wp + 1] >= 0
                a_e = parent[p + 1] >= 0
                a_se = parent[p + wp + 1] >= 0
                a_s = parent[p + wp] >= 0
                a_sw = parent[p + wp - 1] >= 0
                a_w = parent[p - 1] >= 0
                halves = (
                    (a_nw + a_n + a_w >= 2)
                    + (a_n + a_ne + a_e >= 2)
                    + (a_w + a_sw + a_s >= 2)
                    + (a_e + a_se + a_s >= 2)
                )
                area2[p] = halves
            # one union per run of active ring neighbours (consecutive ones touch each other);
            # a ring active all around has no run start: join it through its first neighbour
            prev_active = parent[p - 1] >= 0
            full = True
            for o in ring:
                if parent[p + o] < 0:
                    full = False
                    break
            for o in ring:
                n = p + o
                active = parent[n] >= 0
                if active and (not prev_active or (full and o == ring[0])):
                    other = _find(parent, n)
                    if other != root:
                        if weight[other] > weight[root]:
                            keep, gone = other, root
                        else:
                            keep, gone = root, other
                        last = live[nlive - 1]
                        live[slot[gone]] = last
                        slot[last] = slot[gone]
                        nlive -= 1
                        parent[gone] = keep
                        weight[keep] += weight[gone]
                        area2[keep] += area2[gone]
                        first[keep] = min(first[keep], first[gone])
                        bx0[keep] = min(bx0[keep], bx0[gone])
                        by0[keep] = min(by0[keep], by0[gone])
                        bx1[keep] = max(bx1[keep], bx1[gone])
                        by1[keep] = max(by1[keep], by1[gone])
                        dirty[keep] = True
                        root = keep
                prev_active = active
        if need[v] and nlive > 0:
            if largest:
                pick = live[0]
                for j in range(1, nlive):
                    c = live[j]
                    if area2[c] > area2[pick] or (area2[c] == area2[pick] and first[c] > first[pick]):
                        pick = c
                out[v] = _iou(
                    bx0[pick],
                    by0[pick],
                    min(bx1[pick] + 1, width - 1),
                    min(by1[pick] + 1, height - 1),
                    gts,
                )
            else:
                best = NONE
                for j in range(nlive):
                    c = live[j]
                    if dirty[c]:
                        cached[c] = _iou(
                            bx0[c],
                            by0[c],
                            min(bx1[c] + 1, width - 1),
                            min(by1[c] + 1, height - 1),
                            gts,
                        )
                        dirty[c] = False
                    if cached[c] > best:
                        best = cached[c]
                out[v] = best
    return out


@njit(cache=True, nogil=True)
def level_ious(q, gts, need):
    """Per-level IoU of the V2 best box and of the V1 (largest contour) box.

    Args:
        q: ``(H, W)`` uint8 quantized map (C-contiguous).
        gts: ``(K, 4)`` int64 ground-truth boxes.
        need: ``(257,)`` bool, levels ``L = -1..255`` (index ``L + 1``) to evaluate.

    Returns:
        ``(multi, largest)``: two ``(257,)`` float64 arrays, index ``L + 1``; an empty mask has the
        IoU of the box ``(0, 0, 0, 0)``. Entries not in ``need`` are meaningless.
    """
    hole_best, filled = _holes_and_fill(q, gts, need)
    outer_best = _foreground(q, gts, need, False)
    largest = _foreground(filled, gts, need, True)
    empty = _iou(0, 0, 0, 0, gts)
    multi = np.maximum(outer_best, hole_best)
    for i in range(257):
        if outer_best[i] == NONE:
            multi[i] = empty
            largest[i] = empty
    return multi, largest
