"""Baseline for bench/train_throughput.sh: one yolov8n training step (forward, backward,
AdamW step) at 320 px, batch 16, 2 threads, in PyTorch from Python with Debian's
python3-torch (the LibTorch that yolod uses). No loss, data loading or validation: an upper
bound for a Python trainer on the same machine.

Run by hand: sudo apt-get install python3-torch; /usr/bin/python3 bench/python_step_baseline.py
"""
import torch, time, torch.nn as nn, sys
torch.set_num_threads(2)
class Conv(nn.Module):
    def __init__(s, c1, c2, k=1, st=1):
        super().__init__(); s.conv = nn.Conv2d(c1, c2, k, st, k//2, bias=False); s.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03); s.act = nn.SiLU()
    def forward(s, x): return s.act(s.bn(s.conv(x)))
class Bott(nn.Module):
    def __init__(s, c1, c2, sc):
        super().__init__(); s.cv1 = Conv(c1, c2, 3); s.cv2 = Conv(c2, c2, 3); s.add = sc and c1 == c2
    def forward(s, x): return x + s.cv2(s.cv1(x)) if s.add else s.cv2(s.cv1(x))
class C2f(nn.Module):
    def __init__(s, c1, c2, n, sc):
        super().__init__(); s.c = c2//2; s.cv1 = Conv(c1, 2*s.c); s.cv2 = Conv((2+n)*s.c, c2); s.m = nn.ModuleList(Bott(s.c, s.c, sc) for _ in range(n))
    def forward(s, x):
        y = list(s.cv1(x).chunk(2, 1)); y.extend(m(y[-1]) for m in s.m); return s.cv2(torch.cat(y, 1))
class SPPF(nn.Module):
    def __init__(s, c1, c2):
        super().__init__(); c = c1//2; s.cv1 = Conv(c1, c); s.cv2 = Conv(4*c, c2); s.m = nn.MaxPool2d(5, 1, 2)
    def forward(s, x):
        y = [s.cv1(x)]; y.extend(s.m(y[-1]) for _ in range(3)); return s.cv2(torch.cat(y, 1))
class V8n(nn.Module):
    def __init__(s, nc=3):
        super().__init__()
        s.b = nn.ModuleList([Conv(3,16,3,2), Conv(16,32,3,2), C2f(32,32,1,True), Conv(32,64,3,2), C2f(64,64,2,True), Conv(64,128,3,2), C2f(128,128,2,True), Conv(128,256,3,2), C2f(256,256,1,True), SPPF(256,256)])
        s.up = nn.Upsample(None, 2, 'nearest'); s.c12 = C2f(384,128,1,False); s.c15 = C2f(192,64,1,False); s.c16 = Conv(64,64,3,2); s.c18 = C2f(192,128,1,False); s.c19 = Conv(128,128,3,2); s.c21 = C2f(384,256,1,False)
        s.cv2 = nn.ModuleList(nn.Sequential(Conv(c,64,3), Conv(64,64,3), nn.Conv2d(64,64,1)) for c in (64,128,256))
        s.cv3 = nn.ModuleList(nn.Sequential(Conv(c,64,3), Conv(64,64,3), nn.Conv2d(64,nc,1)) for c in (64,128,256))
    def forward(s, x):
        for i, m in enumerate(s.b):
            x = m(x)
            if i == 4: p3 = x
            if i == 6: p4 = x
        p5 = x
        h12 = s.c12(torch.cat([s.up(p5), p4], 1)); o3 = s.c15(torch.cat([s.up(h12), p3], 1))
        o4 = s.c18(torch.cat([s.c16(o3), h12], 1)); o5 = s.c21(torch.cat([s.c19(o4), p5], 1))
        return [torch.cat([a(f), b(f)], 1) for f, a, b in zip((o3, o4, o5), s.cv2, s.cv3)]
m = V8n()
print("parameters:", sum(p.numel() for p in m.parameters()))
opt = torch.optim.AdamW(m.parameters(), 1e-3)
x = torch.rand(16, 3, 320, 320)
ts = []
for i in range(4):
    t0 = time.time(); out = m(x); t1 = time.time(); sum(o.float().pow(2).mean() for o in out).backward(); t2 = time.time(); opt.step(); opt.zero_grad(); t3 = time.time()
    if i: ts.append((t1-t0, t2-t1, t3-t2))
f, b, s = [sum(t[k] for t in ts)/len(ts) for k in range(3)]
import resource
print(f"python torch yolov8n b16 320: fwd {f*1000:.0f} ms, bwd {b*1000:.0f} ms, step {s*1000:.0f} ms, {16/(f+b+s):.1f} img/s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1000:.0f} MB")
