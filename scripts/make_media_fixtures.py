#!/usr/bin/env python3
"""Make eyrie's sample media and media parity fixtures.

    python3 scripts/make_media_fixtures.py --samples   # regenerate samples/media/*
    python3 scripts/make_media_fixtures.py             # regenerate tests/fixtures/media/*

Samples are synthetic (a procedurally drawn photo-like scene, PNG variants
written by a small pure-Python PNG writer so every colour type / bit depth /
interlace is covered, and speech from Debian's espeak-ng encoded by the
ffmpeg CLI). Fixtures come from the committed samples:

  img_*.eyfx   Qwen2VLImageProcessorPil (transformers, pinned in
               scripts/deps/media-pip.txt) pixel_values for several images,
               sizes and aspect ratios, plus Pillow's decoded RGB;
  mel_*.eyfx   WhisperFeatureExtractor log-mel (numpy path, forced even when
               torch is installed) for speech, tones, silence and >30 s;
  corpus/      deliberately broken files + MANIFEST of expected errors.

File format (.eyfx, little-endian): b"EYFX", u32 version=1, u32 n_entries;
each entry: u16 name_len, name, u8 dtype (0 f32, 1 u8, 2 i64, 3 f64, 4 utf-8
string), u32 ndim, u64 dims[ndim], raw data. tests/media/media_fixture.h
reads it.
"""
import argparse
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples", "media")
FIX = os.path.join(ROOT, "tests", "fixtures", "media")
CORPUS = os.path.join(FIX, "corpus")

# ---------------------------------------------------------------- eyfx writer

def eyfx_write(path, entries):
    out = io.BytesIO()
    out.write(b"EYFX")
    out.write(struct.pack("<II", 1, len(entries)))
    for name, val in entries:
        nb = name.encode()
        out.write(struct.pack("<H", len(nb)))
        out.write(nb)
        if isinstance(val, str):
            data = val.encode()
            out.write(struct.pack("<BIQ", 4, 1, len(data)))
            out.write(data)
            continue
        a = np.asarray(val)
        code = {np.dtype(np.float32): 0, np.dtype(np.uint8): 1,
                np.dtype(np.int64): 2, np.dtype(np.float64): 3}[a.dtype]
        out.write(struct.pack("<BI", code, a.ndim))
        for d in a.shape:
            out.write(struct.pack("<Q", d))
        out.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
    with open(path, "wb") as f:
        f.write(out.getvalue())

# ---------------------------------------------------------------- PNG writer

def _chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

def _pack_rows(arr, bit_depth):
    """arr (h, w, c) ints -> list of packed row bytes (no filter byte)."""
    h, w, c = arr.shape
    rows = []
    for y in range(h):
        r = arr[y].reshape(-1)
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            bits = bytearray((len(r) + per - 1) // per)
            for i, v in enumerate(r):
                bits[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(bits))
    return rows

def png_bytes(arr, color_type, bit_depth, interlace=False, palette=None, trns=None):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w = arr.shape[:2]
    raw = bytearray()
    if not interlace:
        for row in _pack_rows(arr, bit_depth):
            raw += b"\x00" + row
    else:
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for row in _pack_rows(sub, bit_depth):
                raw += b"\x00" + row
    out = b"\x89PNG\r\n\x1a\n"
    out += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                       1 if interlace else 0))
    if palette is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    out += _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    out += _chunk(b"IEND", b"")
    return out

# ---------------------------------------------------------------- samples

def photo_scene(w, h, seed=7):
    """A procedurally drawn 'photo': sky gradient, sun, hills, textured ground,
    soft noise. Smooth regions plus edges and texture, like a real photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / w, y / h
    img = np.zeros((h, w, 3))
    sky = np.stack([0.35 + 0.3 * v, 0.55 + 0.25 * v, 0.95 - 0.2 * v], -1)
    img[:] = sky
    d = np.hypot(u - 0.75, v - 0.22)
    sun = np.clip(1.2 - d * 12, 0, 1)[..., None]
    img = img * (1 - sun) + np.array([1.0, 0.93, 0.7]) * sun
    for k, (amp, freq, base, col) in enumerate([
            (0.06, 3.1, 0.55, (0.25, 0.45, 0.25)), (0.05, 5.3, 0.68, (0.2, 0.38, 0.15)),
            (0.03, 9.7, 0.8, (0.45, 0.35, 0.2))]):
        ridge = base + amp * np.sin(u * freq * np.pi + k) + 0.02 * np.sin(u * 31 + k)
        mask = (v > ridge)[..., None]
        tex = 0.08 * np.sin(x * 0.9 + y * 0.35 * (k + 1)) * np.sin(y * 0.7)
        img = np.where(mask, np.array(col) + tex[..., None] + 0.15 * (v[..., None] - base), img)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

def make_samples():
    from PIL import Image
    os.makedirs(SAMPLES, exist_ok=True)
    p = lambda n: os.path.join(SAMPLES, n)
    photo = photo_scene(640, 480)
    Image.fromarray(photo).save(p("photo.jpg"), quality=85)
    small = photo_scene(320, 240, seed=3)
    Image.fromarray(small).save(p("photo_progressive.jpg"), quality=80, progressive=True)
    # Stored 240x320 (portrait sensor) with EXIF orientation 6: displays 320x240.
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(small, 1))).save(
        p("photo_exif6.jpg"), quality=80, exif=ex.tobytes())
    tiny = photo_scene(160, 120, seed=5)
    Image.fromarray(tiny).convert("CMYK").save(p("photo_cmyk.jpg"), quality=90)
    Image.fromarray(tiny).convert("L").save(p("photo_gray.jpg"), quality=90)
    # PNG variants, 96x72 unless said otherwise.
    base = photo_scene(96, 72, seed=11)
    h, w = base.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = ((xx * 255) // (w - 1)).astype(np.uint8)
    with open(p("png_rgb.png"), "wb") as f:
        f.write(png_bytes(base, 2, 8))
    with open(p("png_rgba.png"), "wb") as f:
        f.write(png_bytes(np.dstack([base, alpha]), 6, 8))
    grey = base.mean(-1).astype(np.uint8)
    with open(p("png_gray.png"), "wb") as f:
        f.write(png_bytes(grey, 0, 8))
    with open(p("png_la.png"), "wb") as f:
        f.write(png_bytes(np.dstack([grey, 255 - alpha]), 4, 8))
    with open(p("png_gray1.png"), "wb") as f:
        f.write(png_bytes((grey > 128).astype(np.uint8), 0, 1))
    g16 = (base.mean(-1) * 257).astype(np.uint16)
    with open(p("png_gray16.png"), "wb") as f:
        f.write(png_bytes(g16, 0, 16))
    rgb16 = (base.astype(np.uint16) * 257 + (yy[..., None] % 7)).astype(np.uint16)
    with open(p("png_rgb16.png"), "wb") as f:
        f.write(png_bytes(rgb16, 2, 16))
    with open(p("png_interlaced.png"), "wb") as f:
        f.write(png_bytes(np.dstack([base, alpha]), 6, 8, interlace=True))
    # Palette with tRNS: 16 colours, four of them partly transparent.
    pal = np.array([[i * 16, 255 - i * 12, (i * 53) % 256] for i in range(16)], np.uint8)
    idx = ((xx // 6 + yy // 6) % 16).astype(np.uint8)
    with open(p("png_palette.png"), "wb") as f:
        f.write(png_bytes(idx, 3, 4, palette=pal, trns=bytes([0, 64, 128, 200])))
    wide = photo_scene(600, 24, seed=13)
    with open(p("png_wide.png"), "wb") as f:
        f.write(png_bytes(wide, 2, 8))
    # Speech: espeak-ng (22050 Hz) -> ffmpeg in several formats.
    text = "Hello from eyrie. Please transcribe this short sentence."
    raw = p("_espeak.wav")
    subprocess.run(["espeak-ng", "-s", "165", "-w", raw, text], check=True)
    ff = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", raw,
          "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    subprocess.run(ff + ["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", p("speech.wav")], check=True)
    subprocess.run(ff + ["-ar", "16000", "-c:a", "flac", p("speech.flac")], check=True)
    subprocess.run(ff + ["-ar", "22050", "-c:a", "libmp3lame", "-b:a", "48k", p("speech.mp3")], check=True)
    subprocess.run(ff + ["-c:a", "libopus", "-b:a", "24k", p("speech.opus")], check=True)
    subprocess.run(ff + ["-c:a", "libvorbis", "-q:a", "2", p("speech_vorbis.ogg")], check=True)
    subprocess.run(ff + ["-c:a", "aac", "-b:a", "48k", p("speech.m4a")], check=True)
    subprocess.run(ff + ["-c:a", "libopus", "-b:a", "24k", p("speech.webm")], check=True)
    # Stereo 22.05 kHz with different channels, to exercise downmix + resampling.
    subprocess.run(ff + ["-filter_complex",
                         "[0:a]asplit[a][b];[b]volume=0.5,adelay=7[c];"
                         "[a][c]join=inputs=2:channel_layout=stereo", "-c:a", "flac",
                         p("speech_stereo22k.flac")], check=True)
    os.remove(raw)

# ---------------------------------------------------------------- image fixtures

def sample_stride(n, target=1024):
    """Every stride-th element, target of them: fixtures stay small while the
    sums below cover every element."""
    return max(1, n // target)

def pil_rgb(path):
    """What transformers does with a file a user hands it, plus exif_transpose
    (vLLM / qwen-vl-utils apply it)."""
    from PIL import Image, ImageOps
    from transformers.image_transforms import convert_to_rgb
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I"):
        # Pillow clips 16-bit grey to 255 when converting; eyrie keeps the high
        # byte (like Pillow does for 16-bit RGB). Reference = high byte.
        a = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(a[..., None], 3, -1)
    return convert_to_rgb(im, return_numpy=True)

IMAGE_CASES = [
    # name, file, preset, min_pixels, max_pixels
    ("photo_default", "photo.jpg", "qwen2vl", None, None),
    ("photo_small", "photo.jpg", "qwen2vl", None, 28 * 28 * 64),
    ("photo_exif6", "photo_exif6.jpg", "qwen2vl", None, 28 * 28 * 128),
    ("photo_progressive_q3", "photo_progressive.jpg", "qwen3vl", None, None),
    ("photo_cmyk_upscale", "photo_cmyk.jpg", "qwen2vl", 448 * 448, None),
    ("photo_gray", "photo_gray.jpg", "qwen2vl", None, None),
    ("png_rgb", "png_rgb.png", "qwen2vl", None, None),
    ("png_rgba", "png_rgba.png", "qwen2vl", None, None),
    ("png_gray", "png_gray.png", "qwen2vl", None, None),
    ("png_la", "png_la.png", "qwen2vl", None, None),
    ("png_gray1", "png_gray1.png", "qwen2vl", None, None),
    ("png_gray16", "png_gray16.png", "qwen2vl", None, None),
    ("png_rgb16", "png_rgb16.png", "qwen2vl", None, None),
    ("png_interlaced", "png_interlaced.png", "qwen3vl", 32 * 32 * 4, None),
    ("png_palette", "png_palette.png", "qwen2vl", None, None),
    ("png_wide", "png_wide.png", "qwen2vl", None, None),
]

def image_fixtures():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    for name, fn, preset, mn, mx in IMAGE_CASES:
        path = os.path.join(SAMPLES, fn)
        rgb = pil_rgb(path)
        if preset == "qwen2vl":
            kw = dict(patch_size=14, temporal_patch_size=2, merge_size=2,
                      image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
            size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
        else:
            kw = dict(patch_size=16, temporal_patch_size=2, merge_size=2,
                      image_mean=[0.5] * 3, image_std=[0.5] * 3)
            size = {"shortest_edge": 65536, "longest_edge": 16777216}
        if mn is not None:
            size["shortest_edge"] = mn
        if mx is not None:
            size["longest_edge"] = mx
        proc = Qwen2VLImageProcessorPil(size=size, **kw)
        out = proc(images=[rgb], return_tensors="np")
        pv = np.asarray(out["pixel_values"], np.float32)
        thw = np.asarray(out["image_grid_thw"], np.int64).reshape(-1)
        flat = pv.reshape(-1)
        si = sample_stride(flat.size)
        dflat = rgb.reshape(-1)
        di = sample_stride(dflat.size)
        eyfx_write(os.path.join(FIX, f"img_{name}.eyfx"), [
            ("file", "samples/media/" + fn),
            ("preset", preset),
            ("min_pixels", np.array([size["shortest_edge"]], np.int64)),
            ("max_pixels", np.array([size["longest_edge"]], np.int64)),
            ("decoded_hw", np.array(rgb.shape[:2], np.int64)),
            ("decoded_stride", np.array([di], np.int64)),
            ("decoded", dflat[::di][:1024].astype(np.uint8)),
            ("decoded_sum", np.array([dflat.astype(np.float64).sum()])),
            ("grid_thw", thw),
            ("shape", np.array(pv.shape, np.int64)),
            ("pixel_stride", np.array([si], np.int64)), ("pixel", flat[::si][:1024]),
            ("pixel_sum", np.array([flat.astype(np.float64).sum()])),
            ("pixel_sumsq", np.array([(flat.astype(np.float64) ** 2).sum()])),
        ])
        print(f"img_{name}: {rgb.shape[1]}x{rgb.shape[0]} -> pixel_values {pv.shape} grid {thw.tolist()}")

# ---------------------------------------------------------------- mel fixtures

def synth_chirp(n):
    """Integer-exact test signal shared with tests/media (35 s at 16 kHz): a
    square-ish chirp plus an LCG hiss, as int16. Must match media_synth_chirp()
    in tests/media/media_fixture.h."""
    out = np.empty(n, np.int16)
    lcg = 12345
    phase = 0
    for i in range(n):
        phase = (phase + 200 + (i >> 6)) & 0xFFFFFF
        sq = 6000 if (phase >> 15) & 1 else -6000
        lcg = (lcg * 1103515245 + 12345) & 0x7FFFFFFF
        noise = ((lcg >> 16) & 0x7FF) - 1024
        out[i] = sq + noise
    return out

def read_pcm_ffmpeg(path, rate=16000):
    r = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path,
                        "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
                       check=True, capture_output=True)
    return np.frombuffer(r.stdout, np.float32)

def whisper_fe(n_mels):
    import transformers.models.whisper.feature_extraction_whisper as fw
    fw.is_torch_available = lambda: False  # pin the numpy path
    return fw.WhisperFeatureExtractor(feature_size=n_mels)

def mel_fixtures():
    tone_path = os.path.join(FIX, "tone.flac")
    t = np.arange(32000) / 16000.0
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)) * 32767
    tone[16000:20000] = 0  # a silent gap
    wav = io.BytesIO()
    import wave
    with wave.open(wav, "wb") as wf:
        wf.setnchannels(1); wf.setsampwidth(2); wf.setframerate(16000)
        wf.writeframes(np.round(tone).astype("<i2").tobytes())
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "wav", "-i", "-",
                    "-c:a", "flac", "-fflags", "+bitexact", tone_path],
                   input=wav.getvalue(), check=True)
    cases = [
        ("speech80", "samples/media/speech.wav", 80),
        ("speech128", "samples/media/speech.wav", 128),
        ("speech_flac128", "samples/media/speech.flac", 128),
        ("tone80", "tests/fixtures/media/tone.flac", 80),
        ("silence128", "synth:silence:16000", 128),
        ("chirp35s128", "synth:chirp:560000", 128),
    ]
    for name, src, n_mels in cases:
        if src.startswith("synth:"):
            _, kind, n = src.split(":")
            n = int(n)
            x = (np.zeros(n, np.float32) if kind == "silence"
                 else synth_chirp(n).astype(np.float32) / 32768.0)
        else:
            x = read_pcm_ffmpeg(os.path.join(ROOT, src))
        fe = whisper_fe(n_mels)
        o = fe(x, sampling_rate=16000, return_attention_mask=True, return_tensors="np")
        feat = np.asarray(o["input_features"][0], np.float32)  # (n_mels, 3000)
        mask = np.asarray(o["attention_mask"][0])
        real = int(mask.sum())
        sel = sorted(set(range(0, 3000, 60)) | set(range(max(0, real - 3), min(3000, real + 3)))
                     | {2999})
        sel = np.array(sel, np.int64)
        eyfx_write(os.path.join(FIX, f"mel_{name}.eyfx"), [
            ("source", src),
            ("n_mels", np.array([n_mels], np.int64)),
            ("n_samples", np.array([x.size], np.int64)),
            ("real_frames", np.array([real], np.int64)),
            ("frames", sel),
            ("mel", np.ascontiguousarray(feat[:, sel])),
            ("mel_sum", np.array([feat.astype(np.float64).sum()])),
            ("mel_max", np.array([float(feat.max())])),
        ])
        print(f"mel_{name}: {x.size} samples, real frames {real}, range "
              f"[{feat.min():.4f}, {feat.max():.4f}]")

# ---------------------------------------------------------------- broken corpus

def corpus():
    os.makedirs(CORPUS, exist_ok=True)
    rd = lambda n: open(os.path.join(SAMPLES, n), "rb").read()
    rng = np.random.default_rng(1234)
    man = []

    def put(name, data, kind, expect, note):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
        man.append(f"{name} {kind} {expect} {note}")

    def flip(data, start, count, seed):
        r = np.random.default_rng(seed)
        b = bytearray(data)
        for _ in range(count):
            i = int(r.integers(start, len(b)))
            b[i] ^= 1 << int(r.integers(0, 8))
        return bytes(b)

    jpg, png = rd("photo_exif6.jpg"), rd("png_rgba.png")
    put("empty.bin", b"", "any", "FORMAT", "zero-length")
    put("jpeg_trunc_header.jpg", jpg[:300], "image", "FORMAT", "cut inside the headers")
    put("jpeg_trunc_half.jpg", jpg[: len(jpg) // 2], "image", "FORMAT", "cut mid-scan")
    put("jpeg_trunc_eoi.jpg", jpg[:-2], "image", "FORMAT", "missing EOI")
    put("jpeg_only_soi.jpg", b"\xff\xd8\xff", "image", "FORMAT", "SOI only")
    # Dimension bomb: patch SOF0 to 65000x65000.
    b = bytearray(jpg)
    i = b.find(b"\xff\xc0")
    b[i + 5:i + 9] = struct.pack(">HH", 65000, 65000)
    put("jpeg_dims_65000.jpg", bytes(b), "image", "LIMIT", "SOF says 65000x65000")
    b = bytearray(jpg)
    b[i + 5:i + 9] = struct.pack(">HH", 0, 640)
    put("jpeg_height0.jpg", bytes(b), "image", "ERR", "SOF height 0 (DNL)")
    # Many progressive scans: 400 empty-ish SOS segments.
    prog = rd("photo_progressive.jpg")
    k = prog.rfind(b"\xff\xd9")
    sos = prog.find(b"\xff\xda")
    many = prog[:sos] + (prog[sos:k] * 1)
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x00" + b"\x00" * 4
    put("jpeg_scan_bomb.jpg", many + scan * 400 + b"\xff\xd9", "image", "LIMIT", "400 extra scans")
    for s in range(3):
        put(f"jpeg_flip{s}.jpg", flip(jpg, 700, 12, s), "image", "ANY", "bit flips in the scan")
    put("jpeg_flip_header.jpg", flip(jpg, 2, 6, 99)[:600] + jpg[600:], "image", "ANY",
        "bit flips in the headers")
    put("png_trunc_sig.png", png[:12], "image", "FORMAT", "cut after the signature")
    put("png_trunc_half.png", png[: len(png) // 2], "image", "FORMAT", "cut mid-IDAT")
    put("png_bad_crc.png", png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], "image", "FORMAT",
        "corrupt IHDR/IDAT byte (CRC mismatch)")
    for s in range(3):
        put(f"png_flip{s}.png", flip(png, 8, 8, 10 + s), "image", "ANY", "bit flips")
    # PNG dimension bombs: IHDR 100000x100000 and a valid-CRC 16000x16000 zero image.
    def png_hdr(w, h, idat):
        out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        return out + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    put("png_dims_100000.png", png_hdr(100000, 100000, zlib.compress(b"\x00" * 64)), "image",
        "LIMIT", "IHDR 100000x100000")
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (16000 * 3)
    blob = b"".join(comp.compress(row) for _ in range(256)) + comp.flush()
    put("png_bomb_16000.png", png_hdr(16000, 16000, blob), "image", "LIMIT",
        "16000x16000 (256 Mpx) decompression bomb")
    put("png_dims_0.png", png_hdr(0, 10, zlib.compress(b"")), "image", "FORMAT", "zero width")
    put("wrong_magic_png_jpeg.png", png[:8] + jpg[8:], "image", "FORMAT", "PNG signature, JPEG body")
    put("wrong_magic_jpeg_png.jpg", b"\xff\xd8\xff" + png[3:], "image", "FORMAT",
        "JPEG SOI, PNG body")
    put("gif.gif", b"GIF89a" + bytes(20), "image", "UNSUPPORTED", "GIF")
    put("text.txt", b"hello, this is not an image nor audio\n" * 4, "any", "FORMAT", "text")
    put("random.bin", bytes(rng.integers(0, 256, 4096, dtype=np.uint8)), "any", "FORMAT", "random bytes")
    # Audio.
    wav, flac, mp3 = rd("speech.wav"), rd("speech.flac"), rd("speech.mp3")
    # Header mutations on a 0.5 s WAV (fix the RIFF/data sizes after cutting).
    wav = bytearray(wav[:44 + 16000])
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    wav[40:44] = struct.pack("<I", 16000)
    wav = bytes(wav)
    opus, m4a = rd("speech.opus"), rd("speech.m4a")
    put("wav_trunc_header.wav", wav[:30], "audio", "FORMAT", "cut inside the header")
    put("wav_trunc_half.wav", wav[: len(wav) // 2], "audio", "FORMAT", "data cut to half of declared")
    b = bytearray(wav)
    b[22:24] = struct.pack("<H", 60000)
    put("wav_channels_60000.wav", bytes(b), "audio", "ERR", "fmt says 60000 channels")
    b = bytearray(wav)
    b[24:28] = struct.pack("<I", 0)
    put("wav_rate0.wav", bytes(b), "audio", "ERR", "sample rate 0")
    b = bytearray(wav)
    b[24:28] = struct.pack("<I", 2000000000)
    put("wav_rate_huge.wav", bytes(b), "audio", "ERR", "sample rate 2e9")
    b = bytearray(wav)
    j = b.find(b"data")
    b[j + 4:j + 8] = struct.pack("<I", 0xFFFFFFF0)
    put("wav_datasize_huge.wav", bytes(b), "audio", "ERR", "data size says 37 h, file holds 0.5 s")
    put("flac_trunc_half.flac", flac[: len(flac) // 2], "audio", "FORMAT", "cut to half")
    fl = bytearray(flac)
    mid = len(fl) // 2
    for q in range(mid, mid + 400, 37):
        fl[q] ^= 0x55
    put("flac_corrupt_frames.flac", bytes(fl), "audio", "FORMAT", "valid container, corrupt frames (CRC)")
    put("mp3_trunc_header.mp3", mp3[:3], "audio", "FORMAT", "3 bytes")
    put("mp3_garbage_frames.mp3", mp3[:2000] + bytes(rng.integers(0, 256, 6000, dtype=np.uint8))
        + mp3[8000:], "audio", "ANY", "random bytes in the middle")
    for s in range(3):
        put(f"mp3_flip{s}.mp3", flip(mp3, 200, 20, 20 + s), "audio", "ANY", "bit flips")
        put(f"opus_flip{s}.opus", flip(opus, 200, 20, 30 + s), "audio", "ANY", "bit flips")
        put(f"m4a_flip{s}.m4a", flip(m4a, 100, 20, 40 + s), "audio", "ANY", "bit flips")
    put("opus_trunc_half.opus", opus[: len(opus) // 2], "audio", "ANY", "cut to half")
    put("m4a_trunc_half.m4a", m4a[: len(m4a) // 2], "audio", "ERR", "moov/mdat cut")
    put("m4a_trunc_head.m4a", m4a[:64], "audio", "FORMAT", "64 bytes")
    # A WAV header claiming 60 minutes at 384 kHz x 16 ch: declared duration over the limit.
    hdr = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 2, 48000, 48000 * 4, 4, 16) + b"data" + struct.pack("<I", 48000 * 4 * 3600)
    put("wav_declares_1h.wav", hdr + bytes(4096), "audio", "LIMIT", "declares 1 h (limit 20 min)")
    with open(os.path.join(CORPUS, "MANIFEST"), "w") as f:
        f.write("# file kind expected  (expected: OK, FORMAT, LIMIT, UNSUPPORTED, ERR = any error,\n"
                "# ANY = error or success; every file must not crash, leak or hang)\n")
        f.write("\n".join(man) + "\n")
    print(f"corpus: {len(man)} files")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", action="store_true", help="regenerate samples/media first")
    args = ap.parse_args()
    if args.samples:
        make_samples()
    os.makedirs(FIX, exist_ok=True)
    image_fixtures()
    mel_fixtures()
    corpus()

if __name__ == "__main__":
    main()
