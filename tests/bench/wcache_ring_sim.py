#!/usr/bin/env python3
# wcache_ring_sim.py: simulates the weight cache ring of kernels/cuda/wcache.cu under the call order of
# trainer/model.c, for the Llama-3-70B linear shapes, and counts per step the dequantizations, those run
# on the main stream (misses), and the time the main stream spends on them or waits for them (a timeline with the
# dequantization on its own stream, as ft_cuda_wcache_prefetch enqueues it).
#
# Call order (trainer/model.c): the forward runs ft_proj per module (q k v o gate up down), naming the
# layer's first weight, then the next module's (after `down` the next layer's q); the backward, per
# layer from the last, recomputes a recomputed layer the same way (its `down` only named, not read),
# or fetches a kept layer's seven weights (ft_layer_fetch: the backward's order, the forward's for
# layer 0), then reads them in the backward's order (down gate up o q k v), naming after each the
# weight layer l-1 takes its place with (ft_bwd_next). --old replays the order before ft_bwd_next
# (a kept layer fetched in the forward's order, nothing named during the backward). --every K: the
# segments' second forward (training.boundary_every), at a segment's first layer ft_bwd_next naming
# the first q of the segment below.
#
# Timeline: a product of weight w costs gemm_ms * |w| / |layer| on the main stream (only the frozen
# products: attention, LoRA and elementwise would hide more); a dequantization deq_ms * |w| / |layer|
# on the prefetch stream, starting once the main stream has done all it had when it was named
# (main_mark), or on the main stream for a miss. Two checks keep it in step: tests/test_wcache_order.c
# (CI) records the calls trainer/model.c makes in a step and compares them with `--trace`, and
# tests/gpu/emu/ring.sh compares the CUDA ring's counts (kernels/cuda/wcache.cu) with `--counts`.
import argparse

ap = argparse.ArgumentParser()
ap.add_argument("--shape", default="llama-3-70b", choices=["llama-3-70b", "qwen3-32b", "mistral-small-24b", "llama-3-8b", "qwen3-14b", "tiny"])
ap.add_argument("--layers", type=int, default=0, help="0: the shape's")
ap.add_argument("--keep", default="0,half,all,-1", help="kept layers to try, comma-separated (numbers, half, all; -1: no recompute)")
ap.add_argument("--round", type=int, default=1 << 20, help="FT_CUDA_SCRATCH_ROUND, bytes")
ap.add_argument("--counts", action="store_true",
                help="print only `prefetched waited on_compute reused` of the last step, a line per --keep (tests/gpu/emu/ring.sh)")
ap.add_argument("--trace", action="store_true",
                help="print only the calls of the last step, `p LAYER MODULE` (named: ft_backend_weight_prefetch) and "
                     "`u LAYER MODULE` (read by a product), modules 0-6 as q k v o gate up down (tests/test_wcache_order.c)")
ap.add_argument("--old", action="store_true", help="the call order before ft_bwd_next")
ap.add_argument("--every", type=int, default=1,
                help="training.boundary_every K: before the backward reaches a segment of K layers (but the last), its "
                     "first K-1 layers run forward again (ft_segment_refill)")
ap.add_argument("--gemm-ms", type=float, default=9.0, help="one layer's frozen products, one pass (70B, seq 4096)")
ap.add_argument("--deq-ms", type=float, default=0.8, help="one layer's dequantization")
a = ap.parse_args()

SHAPES = {  # C, F, H, Hkv, D, layers (trainer/bench.c)
    "llama-3-70b": (8192, 28672, 64, 8, 128, 80),
    "qwen3-32b": (5120, 25600, 64, 8, 128, 64),
    "mistral-small-24b": (5120, 32768, 32, 8, 128, 40),
    "llama-3-8b": (4096, 14336, 32, 8, 128, 32),
    "qwen3-14b": (5120, 17408, 40, 8, 128, 40),
    "tiny": (128, 384, 4, 2, 32, 2),
}
C, F, H, Hkv, D, L = SHAPES[a.shape]
L = a.layers or L
Q, K, V, O, G, U, DN = range(7)
FWD = [Q, K, V, O, G, U, DN]
BWD = [DN, G, U, O, Q, K, V]
sizes = [H * D * C, Hkv * D * C, Hkv * D * C, C * H * D, F * C, F * C, C * F]
r256 = lambda b: (b + 255) // 256 * 256
S = sum(r256(2 * n) for n in sizes)
cap = (S + a.round - 1) // a.round * a.round  # ft_cuda_scratch_bytes: whole MiBs (a tiny shape's ring holds several layers)
frac = [r256(2 * n) / S for n in sizes]


class Ring:
    def __init__(s):
        s.ents = {}  # key -> [off, bytes, ready time, product count when prefetched or None once read]
        s.head = 0
        s.main = s.side = 0.0
        s.products = 0
        s.trace = []
        s.zero()

    def zero(s):  # ft_dequant_counts: prefetched, waited, on_compute (misses), reused
        s.trace = []
        s.deq = s.miss = 0
        s.wait = 0.0
        s.prefetched = s.waited = s.reused = 0

    def put(s, key, ready, mark=None):
        b = r256(2 * sizes[key[1]])
        if s.head + b > cap:
            s.head = 0
        lo, hi = s.head, s.head + b
        for k, (o, bb, _, _) in list(s.ents.items()):
            if o < hi and o + bb > lo:
                del s.ents[k]
        s.ents[key] = [lo, b, ready, mark]
        s.head = hi

    def prefetch(s, key):
        if key is not None:
            s.trace.append("p %d %d" % key)
        if key is None or key in s.ents:
            return
        start = max(s.side, s.main)  # main_mark: after all the main stream has so far
        s.side = start + a.deq_ms * frac[key[1]]
        s.put(key, s.side, s.products)
        s.deq += 1
        s.prefetched += 1

    def use(s, key):
        s.trace.append("u %d %d" % key)
        if key in s.ents:
            e = s.ents[key]
            ready = e[2]
            if e[3] is None:
                s.reused += 1
            else:
                s.waited += e[3] == s.products
                e[3] = None
            if ready > s.main:
                s.wait += ready - s.main
                s.main = ready
        else:
            s.put(key, 0.0)
            s.deq += 1
            s.miss += 1
            s.main += a.deq_ms * frac[key[1]]
            s.wait += a.deq_ms * frac[key[1]]
        s.main += a.gemm_ms * frac[key[1]]
        s.products += 1


def step(r, keep):
    recompute = keep >= 0
    kl = L if keep < 0 else keep
    recomputed = lambda l: recompute and l < L - kl
    bwd_placed = lambda l: not recomputed(l) and l != 0 and l != L - 1
    K = min(a.every, L) if recompute and a.every > 1 else 1  # ft_model_boundary_every

    def proj(l, m, next_layer, read=True):
        if m == Q:
            r.prefetch((l, Q))
        i = FWD.index(m)
        if i + 1 < 7:
            r.prefetch((l, FWD[i + 1]))
        elif next_layer and l + 1 < L:
            r.prefetch((l + 1, Q))
        if read:
            r.use((l, m))

    def bwd_next(l, m):  # ft_bwd_next
        if a.old or l == 0:
            return None
        if K > 1 and l % K == 0:  # the segment below runs forward next, from its first layer
            return (l - K, Q) if m == (DN if bwd_placed(l) else Q) else None
        if recomputed(l - 1):
            return (l - 1, Q) if m == (DN if bwd_placed(l) else Q) else None
        if l - 1 == 0 or not bwd_placed(l):
            return None
        return (l - 1, m)

    for l in range(L):
        for m in FWD:
            proj(l, m, True)
    for l in reversed(range(L)):
        s_ = l // K
        if K > 1 and l % K != 0 and l == (s_ + 1) * K - 1 and s_ != (L - 1) // K:  # ft_segment_refill
            for j in range(s_ * K, l):
                for m in FWD:
                    proj(j, m, j + 1 < l or recomputed(l))
        if recomputed(l):
            for m in FWD:
                proj(l, m, False, read=(m != DN or not recompute))
        elif recompute or not a.old:  # before: no fetch without recompute (every weight a miss)
            for m in FWD if (a.old or l == 0) else BWD:  # ft_layer_fetch
                r.prefetch((l, m))
        for m in BWD:
            r.use((l, m))
            r.prefetch(bwd_next(l, m))


for keep in [{"half": L // 2, "all": L}.get(k) or int(k) for k in a.keep.split(",")]:
    r = Ring()
    for s in range(3):  # the second and later steps are the steady state
        r.zero()
        t0 = r.main
        step(r, keep)
    if a.counts:
        print(r.prefetched, r.waited, r.miss, r.reused)
        continue
    if a.trace:
        print("\n".join(r.trace))
        continue
    name = "no recompute" if keep < 0 else "keep %d of %d" % (keep, L)
    print("%-16s dequants %5d (%.2f per weight), %4d prefetched (%3d waited for), %3d on the compute stream, %4d reused; "
          "the main stream dequantizes or waits %6.2f ms of %8.1f" % (name, r.deq, r.deq / (7 * L), r.prefetched, r.waited,
                                                                      r.miss, r.reused, r.wait, r.main - t0))
