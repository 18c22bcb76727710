"""Fake evaluation folders for the demo reports' tests (no model, no TensorFlow)."""
from __future__ import annotations

import json
import os


def write_eval(out, suffix, top1, top5=None, count=40):
    """`out/eval<suffix>/results.json` and `per_video.csv` of one evaluation: `count` videos of
    class 0; each network right on its first round(top1 * count) videos (so the networks' right
    videos are nested, as paired networks that agree on the easy videos)."""
    folder = os.path.join(out, "eval" + suffix)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({n: {"clip": {"top1": a},
                       "video": {"top1": a, "top5": (top5 or {}).get(n, 1.0), "count": count}}
                   for n, a in top1.items()}, f)
    rows = ["video_id,label," + ",".join(top1)]
    for v in range(count):
        rows.append(f"v{v},0," + ",".join("0" if v < round(a * count) else "1"
                                          for a in top1.values()))
    with open(os.path.join(folder, "per_video.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
