"""How far transformers' own fp32 vision stages are from float64 on a fixture: the floor under any
fp32 engine's agreement with the fp32 goldens. Run with the fixture venv:
    python Quantization/fp32_resolution.py   (reads /work/models/fixtures-hf/tiny-deep, made by make_fixtures.py)
Measured 2026-12-01 (torch 2.13.0+cpu, transformers 5.23.0): tiny-deep stage 0..3 fp32-vs-fp64 max abs
4.1e-05, 2.0e-05, 2.3e-04, 1.7e-05 (|x| up to 60, 20, 218, 13).
"""
import numpy as np, torch
from transformers import Florence2ForConditionalGeneration
m = Florence2ForConditionalGeneration.from_pretrained("/work/models/fixtures-hf/tiny-deep").eval()
px = np.load("/work/main/Tests/Florence2Tests/Fixtures/tiny-deep/pixel_values.npy")  # HWC
x = torch.from_numpy(px).permute(2, 0, 1)[None]
def run(model, x):
    vt = model.model.vision_tower
    cap = {}
    hooks = [vt.blocks[s][-1].register_forward_hook(lambda mm, i, o, s=s: cap.__setitem__(s, o)) for s in range(4)]
    with torch.no_grad(): vt(x)
    for h in hooks: h.remove()
    return cap
c32 = run(m, x.float())
m64 = m.double()
c64 = run(m64, x.double())
for s in range(4):
    a = c32[s].double().numpy(); b = c64[s].numpy()
    print("stage", s, "torch fp32 vs fp64 max abs", np.abs(a - b).max(), "max|x|", np.abs(b).max())
    gold = np.load(f"/work/main/Tests/Florence2Tests/Fixtures/tiny-deep/stage{s}.npy")
print("ok")
