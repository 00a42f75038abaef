#!/usr/bin/env python3
# wcache_ring_sim.py: simulates the weight cache ring of kernels/cuda/wcache.cu under the call order of
# trainer/model.c (forward with prefetch of the next module and of the next layer's q, then per layer
# from the last: recompute with prefetch, backward) for the Llama-3-70B linear shapes, and counts the
# dequantizations per step, how many run on the main stream (misses) and the hits. Keep it in step
# with ft_wc_put (eviction, wrap to 0) and ft_proj (prefetch order) when either changes.
C,F,H,Hkv,D,L=8192,28672,64,8,128,80
sizes=[H*D*C, Hkv*D*C, Hkv*D*C, C*H*D, F*C, F*C, C*F]
r256=lambda b:(b+255)//256*256
S=sum(r256(2*n) for n in sizes); MiB=1<<20
cap=(S+MiB-1)//MiB*MiB
ents={}  # key->(off,bytes)
head=0; deq=0; miss=0; hits=0
def put(key):
    global head
    b=r256(2*sizes[key[1]])
    if head+b>cap: head=0
    lo,hi=head,head+b
    for k,(o,bb) in list(ents.items()):
        if o<hi and o+bb>lo: del ents[k]
    ents[key]=(lo,b); head=hi
def prefetch(key):
    global deq
    if key in ents: return
    put(key); deq+=1
def use(key):
    global deq,miss,hits
    if key in ents: hits+=1; return
    put(key); deq+=1; miss+=1
def proj(l,m,next_layer):
    if m==0: prefetch((l,0))
    if m+1<7: prefetch((l,m+1))
    elif next_layer and l+1<L: prefetch((l+1,0))
    use((l,m))
for step in range(2):
    deq=miss=hits=0
    for l in range(L):
        for m in range(7): proj(l,m,True)
    for l in reversed(range(L)):
        for m in range(7): proj(l,m,False)   # recompute
        for m in reversed(range(7)): use((l,m))  # backward
    print("step",step,"dequants",deq,"(per weight %.2f)"%(deq/(7*L)),"sync misses",miss,"hits",hits)
