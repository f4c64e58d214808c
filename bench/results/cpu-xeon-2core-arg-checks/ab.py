import sys, time, statistics
import numpy as np
from nerv_rt import checkpoint as ckpt_io
from nerv_rt.runtime.pipeline import Pipeline
import nerv_rt
tree = sys.argv[1]
assert nerv_rt.__file__.startswith(tree), nerv_rt.__file__
pipe = Pipeline.load(sys.argv[2], backend="onnxruntime")
pipe.generate(frames=16, steps=50, seed=0)
ts = []
for _ in range(8):
    t = time.perf_counter(); pipe.generate(frames=16, steps=50, seed=0); ts.append(time.perf_counter() - t)
t = time.perf_counter(); tok = pipe.sample_tokens(steps=50, seed=0); s = time.perf_counter() - t
t = time.perf_counter(); pipe.decode(tok, frames=16); dd = time.perf_counter() - t
print(tree, "generate", round(statistics.median(ts)*1e3,1), "sample", round(s*1e3,1), "decode", round(dd*1e3,1))
