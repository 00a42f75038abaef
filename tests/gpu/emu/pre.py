# pre.py: rewrites a .cu file for the CPU emulator (tests/gpu/emu/run.sh): kernel<<<grid, block, smem,
# stream>>>(args) becomes ft_emu_launch(kernel, "kernel", dim3(grid), dim3(block), smem, args) (the name
# for the message of a launch the limits refuse, cuda_emu.h), and
# `extern __shared__ float x[];` becomes a pointer to the block's dynamic shared memory.
import re, sys
src = open(sys.argv[1]).read()
def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{': depth += 1
        if ch in ')]}': depth -= 1
        if ch == ',' and depth == 0: parts.append(cur); cur = ''
        else: cur += ch
    parts.append(cur); return [p.strip() for p in parts]
out, i = '', 0
while True:
    j = src.find('<<<', i)
    if j < 0: out += src[i:]; break
    # kernel name: back to the previous delimiter
    k = j
    if src[k-1] == '>': # template arguments, commas and spaces included: back to the matching '<'
        depth = 0
        while True:
            k -= 1
            depth += {'>': 1, '<': -1}.get(src[k], 0)
            if depth == 0: break
    while k > 0 and (src[k-1].isalnum() or src[k-1] == '_'): k -= 1
    name = src[k:j]
    e = src.find('>>>', j)
    cfg = split_top(src[j+3:e])
    while len(cfg) < 4: cfg.append('0' if len(cfg) == 2 else 'nullptr')
    assert src[e+3] == '(', src[e:e+20]
    out += src[i:k] + 'ft_emu_launch(%s, "%s", dim3(%s), dim3(%s), (size_t)(%s), ' % (name, name, cfg[0], cfg[1], cfg[2])
    i = e + 4
out = re.sub(r'extern __shared__ (?:__align__\(\d+\) )?float (\w+)\[\];', r'float *\1 = (float *)ft_emu_dyn_smem();', out)
sys.stdout.write(out)
