# Inference only: flat vs split benchmark model in one onnxruntime process, 1 thread, batch
# 300 rows of 3 requests; items per CPU-second (process_time). Run from the repo root after
# scripts/bench_split.sh generated both models: .venv/bin/python tools/bench_model/ort_flat_vs_split.py
import time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
flat = ort.InferenceSession("target/bench-model/bench/1/model.onnx", so, providers=["CPUExecutionProvider"])
split = ort.InferenceSession("target/bench-model/bench_split/1/model.onnx", so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(1)
N, R = 300, 3
req = np.repeat(np.arange(R), N // R)
ids = rng.integers(0, 2_000_000, (N, 16)); dense = rng.normal(size=(N, 4)).astype(np.float32)
rc = [0,1,2,3,4,14,15]; ic = [c for c in range(16) if c not in rc]
ur = rng.integers(0, 2_000_000, (R, 7)); ud = rng.normal(size=(R, 3)).astype(np.float32)
ids[:, rc] = ur[req]; dense[:, [0,2,3]] = ud[req]
ff = {"ids": ids, "dense": dense}
sf = {"ids": ids[:, ic].copy(), "dense": dense[:, [1]].copy(), "user_ids": ur, "user_dense": ud, "request_index": req.astype(np.int64)}
a = flat.run(["ctr"], ff)[0]; b = split.run(["ctr"], sf)[0]; print("maxdiff", np.abs(a-b).max())
for rnd in range(3):
    for name, s, f in (("flat", flat, ff), ("split", split, sf)):
        t = time.process_time(); n = 0
        while time.process_time() - t < 2: s.run(["ctr"], f); n += 1
        print(rnd, name, f"{n * N / (time.process_time() - t):.0f} items/CPU-s")
