#!/usr/bin/env python3
"""Media front-end speed: eyrie vs the ffmpeg CLI vs transformers' Python preprocessors.

  pip install pillow numpy transformers    # benchmark-only
  python3 scripts/bench_media.py [--reps 5]

Inputs are made in a temporary folder from committed samples: a 1152x864 (1 MP) JPEG
(samples/media/photo.jpg upscaled with ffmpeg) and 30 s of MP3 (samples/media/speech.wav
looped with ffmpeg). Timed (median of --reps):
- eyrie: `build/eyrie probe FILE` (whole process: decode + Qwen2-VL preprocessing for the
  image; decode + resample to 16 kHz + 128-bin log-mel for the audio);
- ffmpeg CLI: decode only (`ffmpeg -i FILE -f null -`), whole process;
- transformers, in-process: PIL open + Qwen2VLImageProcessor for the image; for the audio,
  WhisperFeatureExtractor (128 bins) on PCM already decoded by ffmpeg (decode not included).
Prints a markdown table with the ratios."""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    eyrie = os.path.join(ROOT, "build", "eyrie")
    d = tempfile.mkdtemp()
    jpg, mp3 = os.path.join(d, "photo1mp.jpg"), os.path.join(d, "speech30s.mp3")
    run(["ffmpeg", "-y", "-i", os.path.join(ROOT, "samples/media/photo.jpg"), "-vf", "scale=1152:864",
         "-q:v", "3", jpg])
    run(["ffmpeg", "-y", "-stream_loop", "-1", "-i", os.path.join(ROOT, "samples/media/speech.wav"),
         "-t", "30", "-ac", "1", "-b:a", "64k", mp3])

    import numpy as np
    from PIL import Image
    from transformers import Qwen2VLImageProcessor, WhisperFeatureExtractor
    ip = Qwen2VLImageProcessor()
    fe = WhisperFeatureExtractor(feature_size=128)
    pcm = np.frombuffer(subprocess.run(["ffmpeg", "-i", mp3, "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
                                       check=True, capture_output=True).stdout, dtype=np.float32)

    rows = []
    e = timed(lambda: run([eyrie, "probe", jpg]), a.reps)
    f = timed(lambda: run(["ffmpeg", "-i", jpg, "-f", "null", "-"]), a.reps)
    t = timed(lambda: ip(Image.open(jpg).convert("RGB"), return_tensors="np"), a.reps)
    rows.append(("1 MP JPEG: decode + Qwen2-VL preprocess", e, f, t))
    e = timed(lambda: run([eyrie, "probe", mp3, "--n-mels", "128"]), a.reps)
    f = timed(lambda: run(["ffmpeg", "-i", mp3, "-f", "null", "-"]), a.reps)
    t = timed(lambda: fe(pcm, sampling_rate=16000, return_tensors="np"), a.reps)
    rows.append(("30 s MP3: decode + 16 kHz + 128-bin log-mel", e, f, t))
    print(f"median of {a.reps}; ms")
    print("| job | eyrie probe (process) | ffmpeg decode only (process) | transformers (in-process) | eyrie / ffmpeg | eyrie / transformers |")
    print("|---|---|---|---|---|---|")
    for name, e, f, t in rows:
        print(f"| {name} | {e:.0f} | {f:.0f} | {t:.0f} | {e / f:.2f} | {e / t:.2f} |")


if __name__ == "__main__":
    main()
