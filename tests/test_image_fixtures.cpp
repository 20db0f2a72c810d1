// The I2V image exactly as the reference sees it: every folder under the fixture roots that holds
// cases.json + decoded.safetensors + preprocessed.safetensors (images/ in ../shared/fixtures, and this
// repository's tests/fixtures/images_*) is checked case by case against what Pillow produced:
//   decoded:      load_image (PIL open, exif_transpose, convert("RGB")): U8 [H,W,3], every byte equal;
//   preprocessed: resizecrop + LANCZOS resize + [-1,1] at each target: F32 [3,H',W'], every float equal.
// Exact equality is the tolerance: the decoders run with Pillow's settings and the resampler does Pillow's
// fixed-point arithmetic, so there is no rounding left to allow for (each float is 2 * (u8 / 255.0f) - 1).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/json.h"
#include "media/image.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;

namespace {

bool is_image_fixture(const fs::path& d) {
    return fs::exists(d / "cases.json") && fs::exists(d / "decoded.safetensors") &&
           fs::exists(d / "preprocessed.safetensors");
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A safetensors file's tensors as raw bytes with dtype and shape. The engine's reader has no U8 dtype (no
// model stores one), so the fixtures' U8 images are read here: the header is JSON (nlohmann), the data raw.
struct RawTensor {
    std::string dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};

std::map<std::string, RawTensor> read_raw_safetensors(const fs::path& p) {
    const std::string file = read_file(p);
    EXPECT_GE(file.size(), 8u) << p;
    uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);  // little-endian length (x86 and ARM hosts)
    const sr::Json header = sr::Json::parse(file.substr(8, size_t(n)));
    std::map<std::string, RawTensor> out;
    for (const auto& [name, v] : header.items()) {
        if (name == "__metadata__") continue;
        RawTensor t;
        t.dtype = v.at("dtype").get<std::string>();
        t.shape = v.at("shape").get<std::vector<int64_t>>();
        const size_t begin = v.at("data_offsets")[0].get<size_t>(), end = v.at("data_offsets")[1].get<size_t>();
        t.bytes = file.substr(8 + size_t(n) + begin, end - begin);
        out[name] = std::move(t);
    }
    return out;
}

TEST(ImageFixtures, DecodedAndPreprocessedEqualThePillowReference) {
    const std::vector<fs::path> dirs = sr::test::find_fixture_dirs(is_image_fixture);
    if (dirs.empty())
        GTEST_SKIP() << "no image fixture folder (cases.json + decoded/preprocessed.safetensors) under "
                     << sr::test::fixtures_root() << " or " << sr::test::own_fixtures_root()
                     << "; set SKYREELS_FIXTURES";
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const sr::Json cases = sr::load_json_file((dir / "cases.json").string());
        const auto decoded = read_raw_safetensors(dir / "decoded.safetensors");
        const auto preprocessed = read_raw_safetensors(dir / "preprocessed.safetensors");
        int n_cases = 0, n_targets = 0;
        for (const auto& [name, c] : cases.at("cases").items()) {
            SCOPED_TRACE(name);
            const sr::Image8 img = sr::load_image((dir / c.at("file").get<std::string>()).string());
            const RawTensor& want = decoded.at(name);
            ASSERT_EQ(want.dtype, "U8");
            ASSERT_EQ(want.shape, (std::vector<int64_t>{img.height, img.width, 3}));
            ASSERT_EQ(want.bytes.size(), img.rgb.size());
            size_t differing = 0;
            int worst = 0;
            for (size_t i = 0; i < img.rgb.size(); ++i) {
                const int d = std::abs(int(uint8_t(want.bytes[i])) - int(img.rgb[i]));
                differing += d != 0;
                worst = std::max(worst, d);
            }
            EXPECT_EQ(differing, 0u) << "decoded bytes differ from Pillow's (largest difference " << worst << ")";
            ++n_cases;

            for (const auto& key : c.at("preprocessed")) {
                const std::string k = key.get<std::string>();
                SCOPED_TRACE(k);
                int64_t th = 0, tw = 0;
                ASSERT_EQ(std::sscanf(k.substr(k.rfind('@') + 1).c_str(), "%ldx%ld", &th, &tw), 2) << k;
                const sr::Tensor got = sr::skyreels_resize_crop(img, th, tw);
                const RawTensor& ref = preprocessed.at(k);
                ASSERT_EQ(ref.dtype, "F32");
                ASSERT_EQ(ref.shape, (std::vector<int64_t>{3, got.dim(1), got.dim(2)}));
                ASSERT_EQ(ref.bytes.size(), size_t(got.numel()) * 4);
                const float* g = got.data<float>();
                size_t off = 0;
                float worst_f = 0.0f;
                for (int64_t i = 0; i < got.numel(); ++i) {
                    float r;
                    std::memcpy(&r, ref.bytes.data() + i * 4, 4);
                    off += r != g[i];
                    worst_f = std::max(worst_f, std::abs(r - g[i]));
                }
                EXPECT_EQ(off, 0u) << "preprocessed floats differ (largest difference " << worst_f << ")";
                ++n_targets;
            }
        }
        std::printf("image fixtures %s: %d images decoded and %d preprocessed targets compared with Pillow's%s\n",
                    dir.string().c_str(), n_cases, n_targets, HasFailure() ? ": SOME DIFFER" : ", all equal");
        EXPECT_GT(n_cases, 0);
    }
}

}  // namespace
