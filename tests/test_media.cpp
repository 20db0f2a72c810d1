// Media layer: the H.264/MP4 writer (checked with ffprobe), PNG/JPEG reading, PNG writing and SkyReels-V1's
// conditioning-image crop and resize.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>  // before jpeglib.h, which needs FILE and size_t

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "core/error.h"
#include "media/exif_orientation.h"
#include "media/image.h"
#include "media/png_frames.h"
#include "media/video_writer.h"
#include "support/fixtures.h"

#include <jpeglib.h>  // NOLINT(llvm-include-order): after <cstdio>

namespace fs = std::filesystem;

namespace {

class MediaTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("skyreels_media_" + std::to_string(getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string file(const std::string& name) const { return (dir_ / name).string(); }
    fs::path dir_;
};

// f32 [3,F,H,W] in [-1,1]: a moving gradient, so the encoder has real content.
sr::Tensor test_frames(int64_t n, int64_t h, int64_t w, int64_t first = 0) {
    sr::Tensor t = sr::Tensor::empty({3, n, h, w}, sr::DType::F32);
    float* p = t.data<float>();
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t f = 0; f < n; ++f)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t x = 0; x < w; ++x)
                    p[((c * n + f) * h + y) * w + x] =
                        std::sin(0.1f * float(x + 3 * (f + first)) + float(c)) * std::cos(0.07f * float(y));
    return t;
}

// ffprobe's view of the first video stream and the container: key=value pairs.
std::map<std::string, std::string> probe(const std::string& path) {
    const std::string cmd =
        "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
        "stream=codec_name,width,height,pix_fmt,nb_read_frames:format=duration,format_name "
        "-of default=noprint_wrappers=1 '" +
        path + "' 2>&1";
    std::map<std::string, std::string> out;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return out;
    char line[512];
    while (std::fgets(line, sizeof(line), pipe)) {
        std::string s(line);
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
        const auto eq = s.find('=');
        if (eq != std::string::npos) out[s.substr(0, eq)] = s.substr(eq + 1);
    }
    pclose(pipe);
    return out;
}

// Expects `fn` to throw sr::InputError whose message contains `needle`.
template <class Fn>
void expect_input_error(Fn&& fn, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no InputError thrown (expected one naming '" << needle << "')";
    } catch (const sr::InputError& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

sr::Tensor image_of(int64_t h, int64_t w, auto&& pixel) {  // pixel(c, y, x) -> [0,1]
    sr::Tensor t = sr::Tensor::empty({3, h, w}, sr::DType::F32);
    float* p = t.data<float>();
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) p[(c * h + y) * w + x] = pixel(c, y, x);
    return t;
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// An RGB JPEG written by libjpeg at `quality` (4:2:0), for tests that need one.
void write_jpeg(const std::string& path, int w, int h, const std::vector<uint8_t>& rgb, int quality) {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr) << path;
    jpeg_compress_struct cinfo{};
    jpeg_error_mgr err{};
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = JDIMENSION(w), cinfo.image_height = JDIMENSION(h);
    cinfo.input_components = 3, cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(&rgb[size_t(cinfo.next_scanline) * size_t(w) * 3]);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    std::fclose(f);
}

TEST_F(MediaTest, Writes24FramesIn2CallsAsOneSecondOfH264) {
    const std::string path = file("clip.mp4");
    {
        sr::VideoWriter writer(path, 64, 48, {.fps = 24, .crf = 18, .png_dir = "", .metadata = {}});
        const sr::Tensor all = test_frames(24, 48, 64);
        writer.write(all.slice(1, 0, 10));  // a strided view, as a VAE tile would be
        EXPECT_FALSE(fs::exists(path)) << "the target must not exist before finish()";
        EXPECT_TRUE(sr::test::partial_file_exists(path));
        writer.write(all.slice(1, 10, 24));
        EXPECT_EQ(writer.frames_written(), 24);
        EXPECT_FALSE(fs::exists(path));
        writer.finish();
    }
    EXPECT_TRUE(fs::exists(path));
    EXPECT_FALSE(sr::test::partial_file_exists(path));
    auto p = probe(path);
    EXPECT_EQ(p["codec_name"], "h264");
    EXPECT_EQ(p["pix_fmt"], "yuv420p");
    EXPECT_EQ(p["width"], "64");
    EXPECT_EQ(p["height"], "48");
    EXPECT_EQ(p["nb_read_frames"], "24");
    EXPECT_NE(p["format_name"].find("mp4"), std::string::npos) << p["format_name"];
    ASSERT_FALSE(p["duration"].empty());
    EXPECT_NEAR(std::stod(p["duration"]), 1.0, 1e-3);
}

TEST_F(MediaTest, Writes97FramesWithPngCopies) {
    const std::string path = file("clip97.mp4");
    const std::string pngs = file("frames");
    sr::VideoWriter writer(path, 32, 16, {.fps = 24, .crf = 23, .png_dir = pngs, .metadata = {}});
    for (int64_t start = 0; start < 97; start += 40) {
        const int64_t n = std::min<int64_t>(40, 97 - start);
        writer.write(test_frames(n, 16, 32, start));
    }
    writer.finish();
    auto p = probe(path);
    EXPECT_EQ(p["nb_read_frames"], "97");
    ASSERT_FALSE(p["duration"].empty());
    EXPECT_NEAR(std::stod(p["duration"]), 97.0 / 24.0, 1e-3);
    EXPECT_TRUE(fs::exists(pngs + "/frame_00000.png"));
    EXPECT_TRUE(fs::exists(pngs + "/frame_00096.png"));
    EXPECT_FALSE(fs::exists(pngs + "/frame_00097.png"));
    // The PNG holds the video's input: round((x/2 + 0.5) * 255) / 255.
    const sr::Tensor frame = sr::load_image_rgb(pngs + "/frame_00041.png");
    const sr::Tensor ref = test_frames(1, 16, 32, 41);
    for (int64_t i = 0; i < ref.numel(); ++i) {
        const float want = std::nearbyint(std::clamp(ref.item_as_float(i) / 2.0f + 0.5f, 0.0f, 1.0f) * 255.0f);
        ASSERT_EQ(frame.item_as_float(i) * 255.0f, want) << i;
    }
}

TEST_F(MediaTest, UnfinishedWriterLeavesNoFile) {
    const std::string path = file("never.mp4");
    {
        sr::VideoWriter writer(path, 16, 16);
        writer.write(test_frames(5, 16, 16));
        EXPECT_TRUE(sr::test::partial_file_exists(path));
    }
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(sr::test::partial_file_exists(path));
    EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(MediaTest, BadVideoInputsAreInputErrors) {
    expect_input_error([&] { sr::VideoWriter w("/nonexistent_dir_sr/out.mp4", 16, 16); },
                       "/nonexistent_dir_sr/out.mp4");
    expect_input_error([&] { sr::VideoWriter w(file("odd.mp4"), 17, 16); }, "even");
    expect_input_error(
        [&] { sr::VideoWriter w(file("fps.mp4"), 16, 16, {.fps = 0, .crf = 18, .png_dir = "", .metadata = {}}); },
        "fps");
    expect_input_error([&] { sr::VideoWriter w(file("ext.unknownext"), 16, 16); }, "ext.unknownext");
    sr::VideoWriter writer(file("shape.mp4"), 16, 16);
    expect_input_error([&] { writer.write(test_frames(2, 16, 18)); }, "[3,F,16,16]");
    expect_input_error([&] { writer.write(sr::Tensor::zeros({4, 16, 16}, sr::DType::F32)); }, "shape.mp4");
    expect_input_error([&] { writer.finish(); }, "no frames");
    EXPECT_TRUE(fs::is_empty(dir_) || !fs::exists(file("shape.mp4")));
}

TEST_F(MediaTest, PngRoundTripIsExact) {
    const sr::Tensor img = image_of(
        7, 5, [](int64_t c, int64_t y, int64_t x) { return float((c * 91 + y * 37 + x * 13) % 256) / 255.0f; });
    sr::save_png(file("rt.png"), img);
    const sr::Tensor back = sr::load_image_rgb(file("rt.png"));
    ASSERT_EQ(back.shape(), img.shape());
    for (int64_t i = 0; i < img.numel(); ++i) ASSERT_EQ(back.item_as_float(i), img.item_as_float(i)) << i;
    expect_input_error([&] { sr::save_png("/nonexistent_dir_sr/x.png", img); }, "/nonexistent_dir_sr/x.png");
}

TEST_F(MediaTest, BadImageFilesAreInputErrorsNamingTheFile) {
    const sr::Tensor img = image_of(40, 30, [](int64_t c, int64_t y, int64_t x) { return float((x ^ y) & 1); });
    sr::save_png(file("good.png"), img);
    const std::string png = read_bytes(file("good.png"));
    write_bytes(file("truncated.png"), png.substr(0, png.size() / 2));
    expect_input_error([&] { sr::load_image_rgb(file("truncated.png")); }, file("truncated.png"));
    std::string corrupt = png;
    for (size_t i = 60; i < corrupt.size() - 12; ++i) corrupt[i] = char(0x5a);  // zlib stream garbage
    write_bytes(file("corrupt.png"), corrupt);
    expect_input_error([&] { sr::load_image_rgb(file("corrupt.png")); }, file("corrupt.png"));
    write_bytes(file("notes.txt"), "this is not an image\n");
    expect_input_error([&] { sr::load_image_rgb(file("notes.txt")); }, file("notes.txt"));
    write_bytes(file("empty.png"), "");
    expect_input_error([&] { sr::load_image_rgb(file("empty.png")); }, file("empty.png"));
    expect_input_error([&] { sr::load_image_rgb(file("missing.png")); }, file("missing.png"));
    expect_input_error([&] { sr::load_image_rgb(dir_.string()); }, dir_.string());
    // A header announcing 100000 x 100000 is refused before anything is allocated.
    std::string huge = png;
    const char dims[8] = {0, 1, char(0x86), char(0xa0), 0, 1, char(0x86), char(0xa0)};
    huge.replace(16, 8, dims, 8);
    write_bytes(file("huge.png"), huge);
    expect_input_error([&] { sr::load_image_rgb(file("huge.png")); }, file("huge.png"));
}

// --png-dir: the set appears only when the video is finished, exactly the frames of this run; a non-empty
// folder is refused (an earlier, longer run's frames are never mixed in); an unfinished run (error, Ctrl-C
// unwinding, a full disk) leaves neither the folder nor its temporary.
TEST_F(MediaTest, PngFramesAppearWholeOrNotAtAll) {
    const std::string pngs = file("frames");
    {
        sr::VideoWriter writer(file("a.mp4"), 16, 16, {.fps = 24, .crf = 23, .png_dir = pngs, .metadata = {}});
        writer.write(test_frames(3, 16, 16));
        EXPECT_FALSE(fs::exists(pngs)) << "the folder must not exist before finish()";
        writer.finish();
    }
    int n = 0;
    for (const auto& e : fs::directory_iterator(pngs)) n += e.path().extension() == ".png";
    EXPECT_EQ(n, 3);
    expect_input_error(
        [&] { sr::VideoWriter w(file("b.mp4"), 16, 16, {.fps = 24, .crf = 23, .png_dir = pngs, .metadata = {}}); },
        "is not empty");
    {  // destroyed unfinished, as when an error or a cancellation unwinds the run
        sr::VideoWriter writer(file("c.mp4"), 16, 16, {.fps = 24, .crf = 23, .png_dir = file("other"), .metadata = {}});
        writer.write(test_frames(2, 16, 16));
    }
    fs::create_directories(file("empty"));
    {
        sr::VideoWriter writer(file("d.mp4"), 16, 16, {.fps = 24, .crf = 23, .png_dir = file("empty"), .metadata = {}});
        writer.write(test_frames(1, 16, 16));
        writer.finish();
    }
    EXPECT_TRUE(fs::exists(file("empty") + "/frame_00000.png"));
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"a.mp4", "d.mp4", "empty", "frames"})) << "leftovers";
}

// A full disk while writing PNG frames (simulated with RLIMIT_FSIZE: writes past it fail with EFBIG) is an
// error naming the frame, not an exit 0 with empty or truncated PNGs; nothing is left behind.
TEST_F(MediaTest, PngFramesOnAFullDiskFailAndLeaveNothing) {
    struct rlimit old {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 600;  // bytes per file: the first noisy 64x64 frame does not fit
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    std::string error;
    try {
        sr::Image8 noisy;
        noisy.width = noisy.height = 64;
        noisy.rgb.resize(64 * 64 * 3);
        for (size_t i = 0; i < noisy.rgb.size(); ++i) noisy.rgb[i] = uint8_t((i * 2654435761u) >> 13);
        sr::PngFrameSet set(file("full"));
        set.write(0, noisy);
        set.commit();
    } catch (const sr::InputError& e) {
        error = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    EXPECT_NE(error.find("frame_00000.png"), std::string::npos) << error;
    EXPECT_NE(error.find("cannot write"), std::string::npos) << error;
    EXPECT_TRUE(fs::is_empty(dir_)) << "a failed set leaves nothing";
}

// Only PNG and JPEG reach a decoder, told by their magic bytes: the formats whose decoders crashed, looped or
// read uninitialised memory in the hostile-input probe (Softimage PIC, Radiance HDR, and header-only PNM /
// TGA / BMP / GIF / PSD files) are refused by name before any decoder runs.
TEST_F(MediaTest, OnlyPngAndJpegAreDecodedOtherFormatsAreNamed) {
    const std::vector<std::pair<std::string, std::string>> files = {
        {std::string("\x53\x80\xf6\x34PICT", 8) + std::string(80, '\0') + std::string("\x00\x40\x00\x40", 4),
         "Softimage PIC"},
        {"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16384 +X 16384\n\x02\x02", "Radiance HDR"},
        {"P6\n16384 16384\n255\n", "PNM"},
        {"GIF89a\x00\x40\x00\x40\x00\x00\x00", "GIF"},
        {"BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00", "BMP"},
        {"8BPS\x00\x01", "PSD"},
        {std::string("RIFF\x10\0\0\0WEBPVP8 ", 16), "WebP"},
        {std::string("II*\0\x08\0\0\0", 8), "TIFF"},
        {std::string("\0\0\x02\0\0\0\0\0\0\0\0\0\x00\x40\x00\x40\x18\x00", 18), "TGA"},
    };
    for (const auto& [bytes, format] : files) {
        write_bytes(file("x.img"), bytes);
        expect_input_error([&] { sr::load_image(file("x.img")); }, "a " + format + " file; only PNG and JPEG");
        expect_input_error([&] { sr::load_image(file("x.img")); }, file("x.img"));
    }
}

// A JPEG cut anywhere (inside the headers, inside the scan, just before EOI) is a clear error, never an image
// padded with invented grey; JPEGs missing their Huffman tables or with a damaged table either decode as
// Pillow's libjpeg would or are refused (the probe's stb crash read uninitialised memory here: ASan checks).
TEST_F(MediaTest, TruncatedAndDamagedJpegsAreErrors) {
    std::vector<uint8_t> rgb(size_t(40 * 24 * 3));
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7 % 251);
    write_jpeg(file("good.jpg"), 40, 24, rgb, 90);
    const std::string jpeg = read_bytes(file("good.jpg"));
    const sr::Image8 good = sr::load_image(file("good.jpg"));
    ASSERT_EQ(good.width, 40);
    const size_t sos = jpeg.find("\xff\xda");
    ASSERT_NE(sos, std::string::npos);
    for (size_t cut : {size_t(3), size_t(20), sos - 10, sos + 4, sos + 40, jpeg.size() - 40, jpeg.size() - 2}) {
        SCOPED_TRACE(cut);
        write_bytes(file("cut.jpg"), jpeg.substr(0, cut));
        expect_input_error([&] { sr::load_image(file("cut.jpg")); }, file("cut.jpg"));
    }
    // Every DHT segment removed, then each table's class byte damaged: no crash, and an error or an image.
    std::string no_dht = jpeg;
    for (size_t at; (at = no_dht.find("\xff\xc4")) != std::string::npos && at < sos;)
        no_dht.erase(at, 2 + (size_t(uint8_t(no_dht[at + 2])) << 8 | uint8_t(no_dht[at + 3])));
    std::string bad_dht = jpeg;
    for (size_t at = 0; (at = bad_dht.find("\xff\xc4", at)) != std::string::npos; at += 2) bad_dht[at + 4] = '\x13';
    for (const std::string& bytes : {no_dht, bad_dht}) {
        write_bytes(file("dht.jpg"), bytes);
        try {
            const sr::Image8 img = sr::load_image(file("dht.jpg"));
            EXPECT_EQ(img.rgb.size(), good.rgb.size());
        } catch (const sr::InputError& e) {
            EXPECT_NE(std::string(e.what()).find(file("dht.jpg")), std::string::npos) << e.what();
        }
    }
}

// Decompression bombs: a few bytes claiming a huge image are refused from the header, before any pixel memory
// is taken (the probe's 30-byte files cost 5.5 GB and 12-18 s), and quickly.
TEST_F(MediaTest, ImagesLargerThanTheLimitsAreRefusedFromTheirHeader) {
    const auto t0 = std::chrono::steady_clock::now();
    sr::Image8 small;
    small.width = 4, small.height = 3;
    small.rgb.assign(36, 100);
    const std::vector<uint8_t> png_bytes = sr::encode_png(small);
    const std::string png(png_bytes.begin(), png_bytes.end());
    auto be32 = [](uint32_t v) {
        return std::string{char(v >> 24), char(v >> 16 & 0xff), char(v >> 8 & 0xff), char(v & 0xff)};
    };
    // Each side within kMaxImageSide but more pixels than kMaxImagePixels; and one side past the limit.
    const int64_t side = sr::kMaxImageSide;
    ASSERT_GT(side * side, sr::kMaxImagePixels);
    for (const auto& [w, h] : {std::pair<int64_t, int64_t>{side, side}, {side + 1, 1}, {1, side + 1}}) {
        std::string huge = png;
        huge.replace(16, 8, be32(uint32_t(w)) + be32(uint32_t(h)));
        write_bytes(file("huge.png"), huge);
        expect_input_error([&] { sr::load_image(file("huge.png")); }, "outside the limits");
    }
    // A JPEG whose frame header claims 65000 x 65000.
    std::vector<uint8_t> rgb(size_t(8 * 8 * 3), 77);
    write_jpeg(file("small.jpg"), 8, 8, rgb, 90);
    std::string jpeg = read_bytes(file("small.jpg"));
    const size_t sof = jpeg.find("\xff\xc0");
    ASSERT_NE(sof, std::string::npos);
    jpeg[sof + 5] = char(0xfd), jpeg[sof + 6] = char(0xe8), jpeg[sof + 7] = char(0xfd), jpeg[sof + 8] = char(0xe8);
    write_bytes(file("huge.jpg"), jpeg);
    expect_input_error([&] { sr::load_image(file("huge.jpg")); }, "outside the limits");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(seconds, 2.0) << "refusing from the header must not decode anything";
}

// A FIFO (or a folder, or a symlink loop) named as the image is refused without blocking: the file is opened
// without waiting for a writer and must be a regular file.
TEST_F(MediaTest, AFifoOrAFolderAsTheImageIsRefusedWithoutBlocking) {
    ASSERT_EQ(::mkfifo(file("pipe.png").c_str(), 0600), 0);
    expect_input_error([&] { sr::load_image(file("pipe.png")); }, "not a regular file");
    expect_input_error([&] { sr::load_image(dir_.string()); }, "not a regular file");
    fs::create_symlink(file("loop_b"), file("loop_a"));
    fs::create_symlink(file("loop_a"), file("loop_b"));
    expect_input_error([&] { sr::load_image(file("loop_a")); }, file("loop_a"));
}

// An EXIF block holding only IFD0's Orientation tag, as a TIFF in either byte order.
std::string exif_tiff(int orientation, bool little_endian) {
    auto u16 = [&](uint32_t v) {
        return little_endian ? std::string{char(v & 0xff), char(v >> 8)} : std::string{char(v >> 8), char(v & 0xff)};
    };
    auto u32 = [&](uint32_t v) {
        return little_endian ? u16(v & 0xffff) + u16(v >> 16) : u16(v >> 16) + u16(v & 0xffff);
    };
    std::string t = little_endian ? "II" : "MM";
    t += u16(42) + u32(8);                                                     // header, IFD0 at offset 8
    t += u16(1);                                                               // one entry
    t += u16(0x0112) + u16(3) + u32(1) + u16(uint32_t(orientation)) + u16(0);  // Orientation, SHORT, 1 value
    t += u32(0);                                                               // no next IFD
    return t;
}

uint32_t crc32_of(const std::string& bytes) {  // PNG's CRC-32 (ISO-HDLC)
    uint32_t c = 0xffffffffu;
    for (unsigned char b : bytes) {
        c ^= b;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

std::string be32_bytes(uint32_t v) {
    return {char(v >> 24), char(v >> 16 & 0xff), char(v >> 8 & 0xff), char(v & 0xff)};
}

// `png` with an eXIf chunk after IHDR (which ends at byte 33).
std::string png_with_exif(const std::string& png, const std::string& tiff) {
    const std::string body = "eXIf" + tiff;
    return png.substr(0, 33) + be32_bytes(uint32_t(tiff.size())) + body + be32_bytes(crc32_of(body)) + png.substr(33);
}

// `jpeg` with an APP1 Exif segment right after SOI.
std::string jpeg_with_exif(const std::string& jpeg, const std::string& tiff) {
    const std::string payload = std::string("Exif\0\0", 6) + tiff;
    const size_t len = payload.size() + 2;
    return jpeg.substr(0, 2) + "\xff\xe1" + std::string{char(len >> 8), char(len & 0xff)} + payload + jpeg.substr(2);
}

// The conditioning image is turned upright by its EXIF orientation, as the reference's load_image does with
// PIL.ImageOps.exif_transpose: each of the 8 orientations of a 2x3 image, by PIL's definitions written out
// pixel by pixel, from a PNG eXIf chunk in both byte orders.
TEST_F(MediaTest, ExifOrientationTurnsTheImageAsPilDoes) {
    // a b c / d e f, the pixel's letter in every channel.
    const sr::Tensor img =
        image_of(2, 3, [](int64_t c, int64_t y, int64_t x) { return float(10 * (y * 3 + x) + c) / 255.0f; });
    sr::save_png(file("plain.png"), img);
    const std::string png = read_bytes(file("plain.png"));
    const std::map<int, std::vector<std::string>> upright = {
        {1, {"abc", "def"}},     {2, {"cba", "fed"}},     {3, {"fed", "cba"}},     {4, {"def", "abc"}},
        {5, {"ad", "be", "cf"}}, {6, {"da", "eb", "fc"}}, {7, {"fc", "eb", "da"}}, {8, {"cf", "be", "ad"}}};
    for (const auto& [orientation, rows] : upright)
        for (bool little : {true, false}) {
            SCOPED_TRACE(::testing::Message() << "orientation " << orientation << (little ? " II" : " MM"));
            const std::string bytes = png_with_exif(png, exif_tiff(orientation, little));
            ASSERT_EQ(sr::exif_orientation(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), orientation);
            write_bytes(file("o.png"), bytes);
            const sr::Tensor got = sr::load_image_rgb(file("o.png"));
            ASSERT_EQ(got.dim(1), int64_t(rows.size()));
            ASSERT_EQ(got.dim(2), int64_t(rows[0].size()));
            for (int64_t y = 0; y < got.dim(1); ++y)
                for (int64_t x = 0; x < got.dim(2); ++x)
                    for (int64_t c = 0; c < 3; ++c) {
                        const int letter = rows[size_t(y)][size_t(x)] - 'a';
                        EXPECT_EQ(got.item_as_float((c * got.dim(1) + y) * got.dim(2) + x),
                                  float(10 * letter + c) / 255.0f)
                            << "pixel " << y << "," << x;
                    }
        }
}

// A JPEG's APP1 Exif segment turns it the same way (the decoded pixels are the untagged file's, turned), and
// broken EXIF blocks are ignored like PIL ignores them: the image loads as stored.
TEST_F(MediaTest, JpegExifOrientationAndBrokenExifBlocks) {
    const sr::Tensor img =
        image_of(16, 24, [](int64_t c, int64_t y, int64_t x) { return float((y * 24 + x) * 3 % 256 + c) / 258.0f; });
    sr::save_png(file("src.png"), img);
    // A JPEG of it at quality 100.
    std::vector<uint8_t> rgb(size_t(16 * 24 * 3));
    for (int64_t y = 0; y < 16; ++y)
        for (int64_t x = 0; x < 24; ++x)
            for (int64_t c = 0; c < 3; ++c)
                rgb[size_t((y * 24 + x) * 3 + c)] = uint8_t(img.item_as_float((c * 16 + y) * 24 + x) * 255.0f);
    write_jpeg(file("plain.jpg"), 24, 16, rgb, 100);
    const std::string jpeg = read_bytes(file("plain.jpg"));
    const sr::Tensor plain = sr::load_image_rgb(file("plain.jpg"));
    write_bytes(file("o6.jpg"), jpeg_with_exif(jpeg, exif_tiff(6, false)));
    const sr::Image8 turned = sr::load_image(file("o6.jpg"));
    const sr::Image8 want = sr::apply_exif_orientation(sr::load_image(file("plain.jpg")), 6);
    ASSERT_EQ(turned.width, 16);
    ASSERT_EQ(turned.height, 24);
    ASSERT_EQ(want.width, turned.width);
    ASSERT_EQ(want.height, turned.height);
    ASSERT_EQ(want.rgb, turned.rgb);

    std::string truncated = exif_tiff(6, true);
    truncated.resize(12);  // the entry is cut off
    std::string bad_offset = exif_tiff(3, true);
    bad_offset[4] = char(0x7f);  // IFD0 far past the end
    std::string wrong_type = exif_tiff(3, false);
    wrong_type[13] = 4;  // LONG instead of SHORT
    for (const std::string& tiff : {truncated, bad_offset, wrong_type, exif_tiff(9, true), std::string("II*")}) {
        const std::string bytes = jpeg_with_exif(jpeg, tiff);
        EXPECT_EQ(sr::exif_orientation(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 1);
        write_bytes(file("broken.jpg"), bytes);
        const sr::Tensor got = sr::load_image_rgb(file("broken.jpg"));
        ASSERT_EQ(got.shape(), plain.shape());
    }
}

// Geometry: what is inside the crop box is green, outside red; a correct crop leaves no red at all (zero input
// stays exactly zero through Pillow's resampling), a box off by one pixel would bleed red into the edges.
float max_red(const sr::Tensor& t) {  // t in [-1,1]
    float m = -1.0f;
    const int64_t plane = t.dim(1) * t.dim(2);
    for (int64_t i = 0; i < plane; ++i) m = std::max(m, t.item_as_float(i));
    return m;
}

TEST_F(MediaTest, ResizeCropKeepsTheCenteredBox) {
    // 200x100 (w x h) to 64x64: new_h = 100, new_w = 100, box x in [50, 150).
    auto wide = image_of(100, 200, [](int64_t c, int64_t y, int64_t x) {
        const bool inside = x >= 50 && x < 150;
        return float(c == (inside ? 1 : 0));
    });
    sr::Tensor out = sr::skyreels_resize_crop(wide, 64, 64);
    ASSERT_EQ(out.shape(), (sr::Shape{3, 64, 64}));
    EXPECT_EQ(max_red(out), -1.0f);
    EXPECT_GT(out.item_as_float(64 * 64 + 32 * 64 + 32), 0.99f);  // green in the middle

    // 101x100 to 100x100: box (0.5, 0, 100.5, 100) rounds half to even to columns [0, 100); the target 100x100
    // becomes 96x96 (multiples of 8).
    auto odd = image_of(100, 101, [](int64_t c, int64_t y, int64_t x) { return float(c == (x == 100 ? 0 : 1)); });
    out = sr::skyreels_resize_crop(odd, 100, 100);
    ASSERT_EQ(out.shape(), (sr::Shape{3, 96, 96}));
    EXPECT_EQ(max_red(out), -1.0f);

    // Tall: 60x200 (w x h) to 48x64 (h x w): h/w > th/tw, new_w = 60, new_h = int(60*48/64) = 45,
    // box y (77.5, 122.5) -> rows [78, 122): 44 rows, one fewer than new_h.
    auto tall =
        image_of(200, 60, [](int64_t c, int64_t y, int64_t x) { return float(c == (y >= 78 && y < 122 ? 1 : 0)); });
    out = sr::skyreels_resize_crop(tall, 48, 64);
    ASSERT_EQ(out.shape(), (sr::Shape{3, 48, 64}));
    EXPECT_EQ(max_red(out), -1.0f);

    // Same size, multiple of 8: no crop, no resampling, only the [-1,1] normalization.
    auto same = image_of(48, 64, [](int64_t c, int64_t y, int64_t x) { return float((c + y * x) % 256) / 255.0f; });
    out = sr::skyreels_resize_crop(same, 48, 64);
    for (int64_t i = 0; i < same.numel(); ++i) ASSERT_EQ(out.item_as_float(i), 2.0f * same.item_as_float(i) - 1.0f);

    expect_input_error([&] { sr::skyreels_resize_crop(same, 4, 64); }, "skyreels_resize_crop");
    expect_input_error(
        [&] {
            sr::skyreels_resize_crop(sr::Tensor::zeros({1, 8, 8}, sr::DType::F32), 8, 8);
        },
        "[3,H,W]");
}

}  // namespace
