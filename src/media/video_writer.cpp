#include "media/video_writer.h"

#include "media/partial_files.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "media/image.h"
#include "media/png_frames.h"

namespace sr {
namespace {

std::string av_error_text(int err) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(err, buf, sizeof(buf));
    return buf;
}

[[noreturn]] void av_fail(const char* call, int err, const char* file, int line) {
    throw VendorError(fmt::format("{} failed ({}) at {}:{}", call, av_error_text(err), file, line));
}

// FFmpeg writes through these into our own descriptor (a file we created exclusively), not through a path it
// would open itself (which follows symlinks and truncates whatever is there).
#if LIBAVFORMAT_VERSION_MAJOR >= 61
int write_to_fd(void* opaque, const uint8_t* buf, int size) {
#else
int write_to_fd(void* opaque, uint8_t* buf, int size) {
#endif
    const int fd = *static_cast<const int*>(opaque);
    int done = 0;
    while (done < size) {
        const ssize_t n = ::write(fd, buf + done, size_t(size - done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return AVERROR(n < 0 ? errno : EIO);
        done += int(n);
    }
    return done;
}

int64_t seek_fd(void* opaque, int64_t offset, int whence) {
    const int fd = *static_cast<const int*>(opaque);
    if (whence & AVSEEK_SIZE) {
        const off_t here = ::lseek(fd, 0, SEEK_CUR), end = ::lseek(fd, 0, SEEK_END);
        ::lseek(fd, here, SEEK_SET);
        return end < 0 ? AVERROR(errno) : int64_t(end);
    }
    const off_t at = ::lseek(fd, off_t(offset), whence & ~AVSEEK_FORCE);
    return at < 0 ? AVERROR(errno) : int64_t(at);
}

}  // namespace
}  // namespace sr

// Every libav call that returns an error code goes through this: a negative result throws a VendorError
// naming the call, FFmpeg's reason and the place.
#define SR_AV_CHECK(call)                                                         \
    do {                                                                          \
        const int sr_av_err_ = (call);                                            \
        if (sr_av_err_ < 0) ::sr::av_fail(#call, sr_av_err_, __FILE__, __LINE__); \
    } while (0)
// For allocators and lookups that return a null pointer on failure.
#define SR_AV_CHECK_PTR(call)                                                       \
    [&] {                                                                           \
        auto sr_av_ptr_ = (call);                                                   \
        if (!sr_av_ptr_) ::sr::av_fail(#call, AVERROR(ENOMEM), __FILE__, __LINE__); \
        return sr_av_ptr_;                                                          \
    }()

namespace sr {

struct VideoWriter::Impl {
    std::string path, partial_path;
    std::unique_ptr<PngFrameSet> pngs;  // --png-dir
    Image8 frame8;
    TemporaryFile partial;  // "<path>.XXXXXX.partial", ours alone; removed on destruction unless committed
    int fd = -1;            // partial's descriptor, which the AVIO callbacks write to
    int64_t width = 0, height = 0;
    VideoWriterOptions options;
    AVFormatContext* format = nullptr;
    AVCodecContext* encoder = nullptr;
    AVStream* stream = nullptr;
    SwsContext* sws = nullptr;
    AVFrame* frame = nullptr;
    AVPacket* packet = nullptr;
    std::vector<uint8_t> rgb;  // one packed RGB24 frame
    int64_t n_frames = 0;
    bool finished = false;
    bool file_open = false;  // format->pb is our AVIOContext

    void open();
    void encode(AVFrame* f);  // nullptr flushes
    void release();
};

void VideoWriter::Impl::open() {
    // FFmpeg logs to stderr by default (x264 prints its settings and statistics): only errors, unless debugging.
    static const bool quiet = (av_log_set_level(log_level() <= LogLevel::Debug ? AV_LOG_INFO : AV_LOG_ERROR), true);
    (void)quiet;
    const AVOutputFormat* container = av_guess_format(nullptr, path.c_str(), nullptr);
    SR_THROW_IF(!container, "cannot tell the container from the file name (use .mp4)");
    // The muxer is chosen from the target's name; the bytes go to the partial file.
    SR_AV_CHECK(avformat_alloc_output_context2(&format, container, nullptr, partial_path.c_str()));

    const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) throw VendorError("avcodec_find_encoder_by_name(\"libx264\"): FFmpeg was built without libx264");
    stream = SR_AV_CHECK_PTR(avformat_new_stream(format, nullptr));
    encoder = SR_AV_CHECK_PTR(avcodec_alloc_context3(codec));
    encoder->width = int(width);
    encoder->height = int(height);
    encoder->pix_fmt = AV_PIX_FMT_YUV420P;
    encoder->time_base = AVRational{1, options.fps};
    encoder->framerate = AVRational{options.fps, 1};
    // BT.709, limited range: what players assume for HD H.264; the RGB->YUV conversion below uses the same.
    encoder->color_range = AVCOL_RANGE_MPEG;
    encoder->colorspace = AVCOL_SPC_BT709;
    encoder->color_primaries = AVCOL_PRI_BT709;
    encoder->color_trc = AVCOL_TRC_BT709;
    if (format->oformat->flags & AVFMT_GLOBALHEADER) encoder->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    SR_AV_CHECK(av_opt_set_int(encoder->priv_data, "crf", options.crf, 0));
    SR_AV_CHECK(av_opt_set(encoder->priv_data, "preset", "medium", 0));
    SR_AV_CHECK(avcodec_open2(encoder, codec, nullptr));
    SR_AV_CHECK(avcodec_parameters_from_context(stream->codecpar, encoder));
    stream->time_base = encoder->time_base;
    stream->avg_frame_rate = encoder->framerate;

    // A name of our own in the target's folder, created with O_EXCL | O_NOFOLLOW: two runs writing the same
    // --out never share it, and a symlink planted there is never followed.
    partial = create_temporary_file(path, ".partial");
    partial_path = partial.path();
    register_partial_file(partial_path);  // Ctrl-C from here on removes it
    fd = partial.fd();
    constexpr int kBufferBytes = 1 << 16;
    auto* buffer = static_cast<unsigned char*>(SR_AV_CHECK_PTR(av_malloc(kBufferBytes)));
    format->pb = avio_alloc_context(buffer, kBufferBytes, 1, &fd, nullptr, write_to_fd, seek_fd);
    if (!format->pb) {
        av_free(buffer);
        av_fail("avio_alloc_context", AVERROR(ENOMEM), __FILE__, __LINE__);
    }
    format->flags |= AVFMT_FLAG_CUSTOM_IO;
    file_open = true;
    // The muxer's faststart pass reopens the file by its url to move the index: name our temporary there.
    av_freep(&format->url);
    format->url = static_cast<char*>(SR_AV_CHECK_PTR(av_strdup(partial_path.c_str())));
    for (const auto& [key, value] : options.metadata)
        SR_AV_CHECK(av_dict_set(&format->metadata, key.c_str(), value.c_str(), 0));
    // MP4/MOV: the index (moov) goes before the frames (mdat) when the trailer is written, so a browser plays
    // the video while it downloads; other containers do not know the option and leave it in `muxer_options`.
    AVDictionary* muxer_options = nullptr;
    if (std::strcmp(container->name, "mp4") == 0 || std::strcmp(container->name, "mov") == 0)
        SR_AV_CHECK(av_dict_set(&muxer_options, "movflags", "+faststart", 0));
    const int header = avformat_write_header(format, &muxer_options);
    av_dict_free(&muxer_options);
    SR_AV_CHECK(header);

    frame = SR_AV_CHECK_PTR(av_frame_alloc());
    frame->format = AV_PIX_FMT_YUV420P;
    frame->width = int(width);
    frame->height = int(height);
    SR_AV_CHECK(av_frame_get_buffer(frame, 0));
    packet = SR_AV_CHECK_PTR(av_packet_alloc());
    sws = SR_AV_CHECK_PTR(sws_getContext(int(width), int(height), AV_PIX_FMT_RGB24, int(width), int(height),
                                         AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                                         nullptr, nullptr, nullptr));
    const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
    // Source full-range RGB, destination limited-range BT.709 YUV; brightness/contrast/saturation neutral.
    SR_AV_CHECK(sws_setColorspaceDetails(sws, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16));
    rgb.resize(size_t(width * height * 3));
}

void VideoWriter::Impl::encode(AVFrame* f) {
    SR_AV_CHECK(avcodec_send_frame(encoder, f));
    for (;;) {
        const int err = avcodec_receive_packet(encoder, packet);
        if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
        if (err < 0) av_fail("avcodec_receive_packet(encoder, packet)", err, __FILE__, __LINE__);
        // The duration must be set before rescaling: without it the muxer guesses the last frame's duration
        // as 0 and a 24-frame 24 fps clip lasts 0.958 s.
        packet->duration = 1;  // in encoder->time_base = 1/fps
        av_packet_rescale_ts(packet, encoder->time_base, stream->time_base);
        packet->stream_index = stream->index;
        SR_AV_CHECK(av_interleaved_write_frame(format, packet));  // takes the packet's reference
    }
}

void VideoWriter::Impl::release() {
    sws_freeContext(sws);
    sws = nullptr;
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&encoder);
    if (format && file_open) {
        av_freep(&format->pb->buffer);
        avio_context_free(&format->pb);
    }
    file_open = false;
    avformat_free_context(format);
    format = nullptr;
}

VideoWriter::VideoWriter(const std::string& path, int64_t width, int64_t height, const VideoWriterOptions& options)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.path = path;
    m.width = width;
    m.height = height;
    m.options = options;
    SR_WITH_CONTEXT("video '" + path + "'", {
        SR_THROW_IF(path.empty(), "empty output path");
        SR_THROW_IF(width < 2 || height < 2 || width > 16384 || height > 16384,
                    "frame size {}x{} (width x height) outside 2..16384", width, height);
        SR_THROW_IF(width % 2 || height % 2, "frame size {}x{} (width x height): H.264 yuv420p needs even sizes", width,
                    height);
        SR_THROW_IF(options.fps < 1 || options.fps > 1000, "fps {} outside 1..1000", options.fps);
        SR_THROW_IF(options.crf < 0 || options.crf > 51, "crf {} outside 0..51", options.crf);
        if (!options.png_dir.empty()) {
            // PNG's registered keywords are capitalised ("Comment", "Description", "Software").
            auto text = options.metadata;
            for (auto& kv : text)
                if (!kv.first.empty()) kv.first[0] = char(std::toupper(static_cast<unsigned char>(kv.first[0])));
            m.pngs = std::make_unique<PngFrameSet>(options.png_dir, std::move(text));
        }
        try {
            m.open();
        } catch (...) {
            m.release();
            unregister_partial_file(m.partial_path);
            m.partial.remove();
            throw;
        }
    });
}

VideoWriter::~VideoWriter() {
    if (!impl_) return;
    impl_->release();
    if (!impl_->finished && !impl_->partial.path().empty())
        SR_LOG_DEBUG("video '{}': not finished, removed '{}'", impl_->path, impl_->partial_path);
    impl_->partial.remove();  // no-op once committed
    unregister_partial_file(impl_->partial_path);
}

void VideoWriter::write(const Tensor& frames) {
    Impl& m = *impl_;
    SR_WITH_CONTEXT("video '" + m.path + "'", {
        SR_THROW_IF(m.finished, "write() after finish()");
        SR_THROW_IF(!frames.defined() || frames.rank() != 4 || frames.dim(0) != 3 || frames.dim(2) != m.height ||
                        frames.dim(3) != m.width || frames.dim(1) < 1,
                    "expected frames [3,F,{},{}], got {}", m.height, m.width,
                    frames.defined() ? frames.describe() : "an undefined tensor");
        SR_THROW_IF(!dtype_is_float(frames.dtype()), "expected float frames, got {}", frames.describe());
        const Tensor x = frames.dtype() == DType::F32 ? frames.contiguous() : frames.to(DType::F32);  // [3,F,H,W]
        const int64_t n = x.dim(1), plane = m.width * m.height;
        const float* src = x.data<float>();
        for (int64_t f = 0; f < n; ++f) {
            // diffusers postprocess_video, then numpy's (x * 255).round() (half to even = nearbyint).
            for (int64_t i = 0; i < plane; ++i)
                for (int c = 0; c < 3; ++c) {
                    const float v = src[(c * n + f) * plane + i] / 2.0f + 0.5f;
                    m.rgb[size_t(i * 3 + c)] = !(v > 0.0f) ? 0
                                               : v >= 1.0f ? 255
                                                           : uint8_t(std::nearbyint(v * 255.0f));  // NaN -> 0
                }
            if (m.pngs) {
                // The bytes already rounded for the encoder, so the PNG holds exactly the video's input.
                m.frame8.width = m.width, m.frame8.height = m.height;
                m.frame8.rgb.assign(m.rgb.begin(), m.rgb.end());
                m.pngs->write(m.n_frames, m.frame8);
            }
            SR_AV_CHECK(av_frame_make_writable(m.frame));
            const uint8_t* src_planes[1] = {m.rgb.data()};
            const int src_strides[1] = {int(m.width * 3)};
            SR_AV_CHECK(sws_scale(m.sws, src_planes, src_strides, 0, int(m.height), m.frame->data, m.frame->linesize));
            m.frame->pts = m.n_frames;
            m.encode(m.frame);
            ++m.n_frames;
        }
    });
}

void VideoWriter::finish() {
    Impl& m = *impl_;
    SR_WITH_CONTEXT("video '" + m.path + "'", {
        SR_THROW_IF(m.finished, "finish() called twice");
        SR_THROW_IF(m.n_frames == 0, "no frames were written");
        m.encode(nullptr);
        SR_AV_CHECK(av_write_trailer(m.format));
        avio_flush(m.format->pb);
        // A failed write (a full disk) is sticky in the context: check it before the file becomes the output.
        SR_THROW_IF(m.format->pb->error < 0, "cannot write '{}': {}", m.partial_path,
                    av_error_text(m.format->pb->error));
        av_freep(&m.format->pb->buffer);
        avio_context_free(&m.format->pb);
        m.file_open = false;
        m.partial.commit(m.path);
        unregister_partial_file(m.partial_path);
        if (m.pngs) m.pngs->commit();
        m.finished = true;
    });
}

std::string ffmpeg_version() {
    return av_version_info();
}

int64_t VideoWriter::frames_written() const {
    return impl_->n_frames;
}

const std::string& VideoWriter::path() const {
    return impl_->path;
}

}  // namespace sr
