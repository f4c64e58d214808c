"""In-process A/B: median of 8 `Pipeline.generate` calls (tiny, 16 frames, DDIM 50, onnxruntime) of the tree given
as argv[1] (its nerv_rt must be the one imported), on the export given as argv[2]."""
import statistics
import sys
import time

import nerv_rt
from nerv_rt.runtime.pipeline import Pipeline


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


tree = sys.argv[1]
assert nerv_rt.__file__.startswith(tree), nerv_rt.__file__
pipe = Pipeline.load(sys.argv[2], backend="onnxruntime")
pipe.generate(frames=16, steps=50, seed=0)
generate = statistics.median(seconds(lambda: pipe.generate(frames=16, steps=50, seed=0)) for _ in range(8))
tokens = []
sample = seconds(lambda: tokens.append(pipe.sample_tokens(steps=50, seed=0)))
decode = seconds(lambda: pipe.decode(tokens[0], frames=16))
print(tree, "generate", round(generate * 1e3, 1), "sample", round(sample * 1e3, 1), "decode", round(decode * 1e3, 1))
