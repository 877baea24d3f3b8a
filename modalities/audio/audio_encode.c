/* eyrie — encode mono float PCM to WAV / FLAC / MP3 / Ogg Opus in memory.
 *
 * PCM -> libswresample (to the encoder's sample format and rate) -> encoder
 * frames of its frame_size -> muxer writing into a growable, seekable memory
 * buffer (the WAV and FLAC muxers seek back to patch their headers). */
#include "modalities/audio/audio_internal.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUT_BYTES ((size_t)256 << 20)

int ey_audio_codec_from_name(const char *name)
{
    if (!name) return -1;
    if (!strcasecmp(name, "wav")) return EY_AUDIO_CODEC_WAV;
    if (!strcasecmp(name, "flac")) return EY_AUDIO_CODEC_FLAC;
    if (!strcasecmp(name, "mp3")) return EY_AUDIO_CODEC_MP3;
    if (!strcasecmp(name, "opus") || !strcasecmp(name, "ogg")) return EY_AUDIO_CODEC_OPUS;
    return -1;
}

const char *ey_audio_codec_name(ey_audio_codec c)
{
    switch (c) {
    case EY_AUDIO_CODEC_WAV: return "wav";
    case EY_AUDIO_CODEC_FLAC: return "flac";
    case EY_AUDIO_CODEC_MP3: return "mp3";
    case EY_AUDIO_CODEC_OPUS: return "opus";
    }
    return "?";
}

typedef struct mem_writer {
    uint8_t *buf;
    size_t len, cap, pos;
    int overflow;
} mem_writer;

static int mem_write(void *opaque, uint8_t *data, int size)
{
    mem_writer *w = opaque;
    if (size < 0) return AVERROR(EINVAL);
    if ((size_t)size > MAX_OUT_BYTES - w->pos) {
        w->overflow = 1;
        return AVERROR(ENOSPC);
    }
    size_t end = w->pos + (size_t)size;
    if (end > w->cap) {
        size_t cap = w->cap ? w->cap : 65536;
        while (cap < end) cap *= 2;
        uint8_t *p = realloc(w->buf, cap);
        if (!p) return AVERROR(ENOMEM);
        w->buf = p;
        w->cap = cap;
    }
    if (w->pos > w->len) memset(w->buf + w->len, 0, w->pos - w->len);
    memcpy(w->buf + w->pos, data, (size_t)size);
    w->pos = end;
    if (end > w->len) w->len = end;
    return size;
}

static int64_t mem_wseek(void *opaque, int64_t off, int whence)
{
    mem_writer *w = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return (int64_t)w->len;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)w->pos
                 : whence == SEEK_END ? (int64_t)w->len : -1;
    if (base < 0) return AVERROR(EINVAL);
    int64_t p = base + off;
    if (p < 0 || (uint64_t)p > MAX_OUT_BYTES) return AVERROR(EINVAL);
    w->pos = (size_t)p;
    return p;
}

static const AVCodec *pick_encoder(ey_audio_codec c, const char **mux)
{
    switch (c) {
    case EY_AUDIO_CODEC_WAV:
        *mux = "wav";
        return avcodec_find_encoder(AV_CODEC_ID_PCM_S16LE);
    case EY_AUDIO_CODEC_FLAC:
        *mux = "flac";
        return avcodec_find_encoder(AV_CODEC_ID_FLAC);
    case EY_AUDIO_CODEC_MP3: {
        *mux = "mp3";
        const AVCodec *e = avcodec_find_encoder_by_name("libmp3lame");
        return e ? e : avcodec_find_encoder(AV_CODEC_ID_MP3);
    }
    case EY_AUDIO_CODEC_OPUS: {
        *mux = "ogg";
        const AVCodec *e = avcodec_find_encoder_by_name("libopus");
        return e ? e : avcodec_find_encoder(AV_CODEC_ID_OPUS);
    }
    }
    return NULL;
}

/* Prefer float formats (no extra quantisation), else the first offered. */
static enum AVSampleFormat pick_fmt(const AVCodec *codec)
{
    const enum AVSampleFormat *f = codec->sample_fmts;
    if (!f) return AV_SAMPLE_FMT_S16;
    for (const enum AVSampleFormat *p = f; *p != AV_SAMPLE_FMT_NONE; p++)
        if (*p == AV_SAMPLE_FMT_FLT || *p == AV_SAMPLE_FMT_FLTP) return *p;
    for (const enum AVSampleFormat *p = f; *p != AV_SAMPLE_FMT_NONE; p++)
        if (*p == AV_SAMPLE_FMT_S16 || *p == AV_SAMPLE_FMT_S16P) return *p;
    return f[0];
}

static int rate_supported(const AVCodec *codec, int rate)
{
    if (!codec->supported_samplerates) return 1;
    for (const int *r = codec->supported_samplerates; *r; r++)
        if (*r == rate) return 1;
    return 0;
}

static int write_packets(AVCodecContext *enc, AVFormatContext *mux, AVStream *st, AVPacket *pkt)
{
    for (;;) {
        int r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return r;
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(mux, pkt);
        if (r < 0) return r;
    }
}

ey_err ey_audio_encode(const float *pcm, size_t n, uint32_t in_rate, ey_audio_codec c,
                       uint32_t out_rate, int64_t bit_rate, uint8_t **out, size_t *out_len)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    if (!out || !out_len) return ey_err_set(EY_ERR_ARG, "encode: NULL output");
    *out = NULL;
    *out_len = 0;
    if (!pcm && n) return ey_err_set(EY_ERR_ARG, "encode: NULL pcm");
    if (in_rate < 1000 || in_rate > 384000)
        return ey_err_set(EY_ERR_ARG, "encode: input rate %u outside 1000..384000", in_rate);
    if (out_rate == 0) out_rate = in_rate;
    if (out_rate < 1000 || out_rate > 384000)
        return ey_err_set(EY_ERR_ARG, "encode: output rate %u outside 1000..384000", out_rate);
    if (n > (size_t)in_rate * 3600 * 4)
        return ey_err_set(EY_ERR_LIMIT, "encode: more than 4 h of audio");
    const char *mux_name = NULL;
    const AVCodec *codec = pick_encoder(c, &mux_name);
    if (!mux_name) return ey_err_set(EY_ERR_ARG, "encode: unknown codec %d", (int)c);
    if (!codec)
        return ey_err_set(EY_ERR_UNSUPPORTED, "encode: this FFmpeg has no %s encoder",
                          ey_audio_codec_name(c));
    if (!rate_supported(codec, (int)out_rate))
        return ey_err_set(EY_ERR_ARG, "encode: %s does not support %u Hz", codec->name, out_rate);

    ey_err e = EY_OK;
    int r;
    mem_writer mw = {0};
    AVCodecContext *enc = NULL;
    AVFormatContext *mux = NULL;
    AVIOContext *avio = NULL;
    SwrContext *swr = NULL;
    AVFrame *fr = NULL;
    AVPacket *pkt = NULL;
    uint8_t *iobuf = NULL;
    AVAudioFifo *fifo = NULL;
    uint8_t *tmp[1] = {NULL};
    int header_written = 0;

    enc = avcodec_alloc_context3(codec);
    if (!enc) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: codec context");
        goto done;
    }
    enc->sample_fmt = pick_fmt(codec);
    enc->sample_rate = (int)out_rate;
    enc->time_base = (AVRational){1, (int)out_rate};
    av_channel_layout_default(&enc->ch_layout, 1);
    enc->thread_count = 1;
    if (bit_rate > 0) enc->bit_rate = bit_rate;
    else if (c == EY_AUDIO_CODEC_MP3) enc->bit_rate = 128000;
    else if (c == EY_AUDIO_CODEC_OPUS) enc->bit_rate = 64000;
    if (c == EY_AUDIO_CODEC_FLAC || c == EY_AUDIO_CODEC_WAV) enc->bits_per_raw_sample = 16;
    if (c == EY_AUDIO_CODEC_FLAC) enc->sample_fmt = AV_SAMPLE_FMT_S16;

    if ((r = avformat_alloc_output_context2(&mux, NULL, mux_name, NULL)) < 0 || !mux) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "encode: no %s muxer", mux_name);
        goto done;
    }
    if (mux->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((r = avcodec_open2(enc, codec, NULL)) < 0) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "encode: cannot open %s at %u Hz: %s", codec->name,
                       out_rate, ey_av_err_str_impl(r, eb));
        goto done;
    }
    AVStream *st = avformat_new_stream(mux, NULL);
    if (!st) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: stream");
        goto done;
    }
    st->time_base = enc->time_base;
    if ((r = avcodec_parameters_from_context(st->codecpar, enc)) < 0) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: codec parameters");
        goto done;
    }
    const int iobuf_size = 32768;
    iobuf = av_malloc(iobuf_size);
    avio = iobuf ? avio_alloc_context(iobuf, iobuf_size, 1, &mw, NULL, mem_write, mem_wseek) : NULL;
    if (!avio) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: AVIOContext");
        goto done;
    }
    iobuf = NULL; /* owned by avio now */
    mux->pb = avio;
    mux->flags |= AVFMT_FLAG_CUSTOM_IO | AVFMT_FLAG_BITEXACT;
    if ((r = avformat_write_header(mux, NULL)) < 0) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "encode: %s header: %s", mux_name, ey_av_err_str_impl(r, eb));
        goto done;
    }
    header_written = 1;

    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    r = swr_alloc_set_opts2(&swr, &enc->ch_layout, enc->sample_fmt, (int)out_rate, &mono,
                            AV_SAMPLE_FMT_FLT, (int)in_rate, 0, NULL);
    if (r >= 0) r = swr_init(swr);
    if (r < 0) {
        e = ey_err_set(EY_ERR_UNSUPPORTED, "encode: resampler: %s", ey_av_err_str_impl(r, eb));
        goto done;
    }
    const int frame_size = enc->frame_size > 0 ? enc->frame_size : 1024;
    fr = av_frame_alloc();
    pkt = av_packet_alloc();
    if (!fr || !pkt) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: frame/packet");
        goto done;
    }
    /* PCM -> swr -> FIFO; the encoder takes exactly frame_size samples per
     * frame, the last one may be short (libavcodec pads it if needed). */
    fifo = av_audio_fifo_alloc(enc->sample_fmt, 1, frame_size * 4);
    const int chunk = 4096;
    const int out_max = (int)av_rescale_rnd(chunk, out_rate, in_rate, AV_ROUND_UP) + 256;
    r = fifo ? av_samples_alloc(tmp, NULL, 1, out_max, enc->sample_fmt, 0) : AVERROR(ENOMEM);
    if (r < 0) {
        e = ey_err_set(EY_ERR_NOMEM, "encode: buffers");
        goto done;
    }
    size_t in_pos = 0;
    int64_t pts = 0;
    float clip[4096];
    for (int last = 0; !last;) {
        int got;
        if (in_pos < n) {
            size_t k = n - in_pos < (size_t)chunk ? n - in_pos : (size_t)chunk;
            for (size_t i = 0; i < k; i++) {
                float v = pcm[in_pos + i];
                clip[i] = v != v ? 0.0f : v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
            }
            const uint8_t *in[1] = {(const uint8_t *)clip};
            got = swr_convert(swr, tmp, out_max, in, (int)k);
            in_pos += k;
        } else {
            got = swr_convert(swr, tmp, out_max, NULL, 0); /* drain */
            if (got == 0) last = 1;
        }
        if (got < 0) {
            r = got;
            break;
        }
        if (got > 0 && av_audio_fifo_write(fifo, (void **)tmp, got) < got) {
            r = AVERROR(ENOMEM);
            break;
        }
        while (av_audio_fifo_size(fifo) >= frame_size || (last && av_audio_fifo_size(fifo) > 0)) {
            int k = av_audio_fifo_size(fifo) < frame_size ? av_audio_fifo_size(fifo) : frame_size;
            av_frame_unref(fr);
            fr->nb_samples = k;
            fr->format = enc->sample_fmt;
            fr->sample_rate = enc->sample_rate;
            if ((r = av_channel_layout_copy(&fr->ch_layout, &enc->ch_layout)) < 0) break;
            if ((r = av_frame_get_buffer(fr, 0)) < 0) break;
            if (av_audio_fifo_read(fifo, (void **)fr->data, k) < k) {
                r = AVERROR_BUG;
                break;
            }
            fr->pts = pts;
            pts += k;
            if ((r = avcodec_send_frame(enc, fr)) < 0) break;
            if ((r = write_packets(enc, mux, st, pkt)) < 0) break;
        }
        if (r < 0) break;
    }
    if (r < 0) {
        e = mw.overflow ? ey_err_set(EY_ERR_LIMIT, "encode: output over %zu MiB", MAX_OUT_BYTES >> 20)
                        : ey_err_set(EY_ERR_FORMAT, "encode: %s: %s", codec->name, ey_av_err_str_impl(r, eb));
        goto done;
    }
    avcodec_send_frame(enc, NULL);
    if ((r = write_packets(enc, mux, st, pkt)) < 0 || (r = av_write_trailer(mux)) < 0) {
        header_written = 0;
        e = mw.overflow ? ey_err_set(EY_ERR_LIMIT, "encode: output over %zu MiB", MAX_OUT_BYTES >> 20)
                        : ey_err_set(EY_ERR_FORMAT, "encode: finishing %s: %s", mux_name, ey_av_err_str_impl(r, eb));
        goto done;
    }
    header_written = 0;
    avio_flush(avio);
    if (mw.overflow || avio->error < 0) {
        e = ey_err_set(EY_ERR_LIMIT, "encode: output over %zu MiB", MAX_OUT_BYTES >> 20);
        goto done;
    }
    *out = mw.buf;
    *out_len = mw.len;
    mw.buf = NULL;
done:
    if (header_written) av_write_trailer(mux);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    swr_free(&swr);
    if (fifo) av_audio_fifo_free(fifo);
    av_freep(&tmp[0]);
    avcodec_free_context(&enc);
    if (mux) avformat_free_context(mux);
    if (avio) av_freep(&avio->buffer);
    avio_context_free(&avio);
    av_free(iobuf);
    free(mw.buf);
    return e;
}
