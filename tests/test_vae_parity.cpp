// Parity of the causal 3-D VAE with diffusers' AutoencoderKLHunyuanVideo on every fixture folder found by
// content (model/config.json with _class_name AutoencoderKLHunyuanVideo, inputs/outputs.safetensors,
// tiling.json), case by case as tiling.json lists them; a long streamed decode; and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_vae.h"
#include "support/compare.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

std::vector<fs::path> vae_fixtures() {
    return test::find_fixture_dirs([](const fs::path& d) {
        return test::model_config_names(d, "_class_name", "AutoencoderKLHunyuanVideo") &&
               fs::exists(d / "inputs.safetensors") && fs::exists(d / "outputs.safetensors") &&
               fs::exists(d / "tiling.json");
    });
}

// Tolerances from the fixture's tolerances.json. Outputs: its suggested_max_abs (documented there as the
// threshold for an fp32 engine, ~100x the measured f32-vs-f64 noise of the reference). Intermediates: 100x
// their measured f32-vs-f64 noise, the same margin: our f32 sums run in another order (oneDNN's blocked
// convolution, flash attention tiles, double-precision norm statistics), so we differ from torch by a few
// times that noise, never by orders of magnitude; floored at 2e-5 where the noise is tiny.
struct Tolerances {
    std::map<std::string, double> suggested, noise;
    double of(const std::string& name) const {
        if (auto it = suggested.find(name); it != suggested.end()) return it->second;
        auto it = noise.find(name);
        return std::max(100.0 * (it == noise.end() ? 1e-5 : it->second), 2e-5);
    }
};

Tolerances read_tolerances(const fs::path& dir) {
    Tolerances t;
    const Json j = load_json_file((dir / "tolerances.json").string());
    auto read = [&](const char* key, std::map<std::string, double>& into) {
        if (!j.contains(key)) return;
        for (auto it = j[key].begin(); it != j[key].end(); ++it) into[it.key()] = it.value().get<double>();
    };
    read("suggested_max_abs", t.suggested);
    read("fp32_vs_fp64_max_abs_intermediates", t.noise);
    return t;
}

VAETiling tiling_for(const Json& tiling_json, bool tiled) {
    VAETiling t;
    t.use_framewise_encoding = tiling_json.value("use_framewise_encoding", true);
    t.use_framewise_decoding = tiling_json.value("use_framewise_decoding", true);
    if (!tiled) return t;  // untiled cases ran with the defaults (tiling.json: untiled_cases_used_defaults)
    t.use_tiling = true;
    const Json& k = tiling_json["enable_tiling_kwargs"];
    t.tile_sample_min_height = k.value("tile_sample_min_height", t.tile_sample_min_height);
    t.tile_sample_min_width = k.value("tile_sample_min_width", t.tile_sample_min_width);
    t.tile_sample_min_num_frames = k.value("tile_sample_min_num_frames", t.tile_sample_min_num_frames);
    t.tile_sample_stride_height = k.value("tile_sample_stride_height", t.tile_sample_stride_height);
    t.tile_sample_stride_width = k.value("tile_sample_stride_width", t.tile_sample_stride_width);
    t.tile_sample_stride_num_frames = k.value("tile_sample_stride_num_frames", t.tile_sample_stride_num_frames);
    return t;
}

bool starts_with(const std::string& s, const std::string& p) {
    return s.compare(0, p.size(), p) == 0;
}

// Runs one case of tiling.json on one fixture and compares every output and intermediate named
// "<case>.*". Returns how many tensors were compared.
int run_case(const fs::path& dir, const std::string& case_name) {
    const Json tiling_json = load_json_file((dir / "tiling.json").string());
    const Json& c = tiling_json["cases"][case_name];
    const HunyuanVideoVAE vae = HunyuanVideoVAE::load((dir / "model").string());
    EXPECT_TRUE(vae.unused_tensors().empty());
    const WeightStore inputs = WeightStore::open((dir / "inputs.safetensors").string());
    const WeightStore outputs = WeightStore::open((dir / "outputs.safetensors").string());
    const Tolerances tol = read_tolerances(dir);
    const std::string input_name = c["input"].get<std::string>();
    const VAETiling tiling = tiling_for(tiling_json, c.value("tiling", false));
    const bool is_encode = input_name.size() > 2 && input_name.compare(input_name.size() - 2, 2, ".x") == 0;

    std::map<std::string, Tensor> got;
    const std::string prefix = case_name + ".";
    auto hook = [&](std::string_view name, const Tensor& t) { got[prefix + std::string(name)] = t.clone(); };
    CpuBackend& be = cpu_backend();
    be.set_gemm_precision(GemmPrecision::F32);
    if (is_encode) {
        const LatentDistribution d = vae.encode(be, inputs.get(input_name), tiling, hook);
        got[prefix + "moments"] = d.moments;
        got[prefix + "mean"] = d.mean;
        got[prefix + "logvar"] = d.logvar;
        got[prefix + "std"] = d.std;
        if (c.contains("encoder_calls")) {
            EXPECT_EQ(vae.encoder_calls(), c["encoder_calls"].get<int64_t>());
        }
    } else {
        got[prefix + "sample"] = vae.decode(be, inputs.get(input_name), tiling, hook);
        if (c.contains("decoder_calls")) {
            EXPECT_EQ(vae.decoder_calls(), c["decoder_calls"].get<int64_t>());
        }
    }

    int compared = 0;
    std::vector<std::string> files{"outputs.safetensors"};
    if (fs::exists(dir / "intermediates.safetensors")) files.push_back("intermediates.safetensors");
    for (const std::string& file : files) {
        const WeightStore expected = WeightStore::open((dir / file).string());
        for (const std::string& name : expected.names()) {
            if (!starts_with(name, prefix)) continue;
            auto it = got.find(name);
            EXPECT_NE(it, got.end()) << "the VAE produced no tensor named '" << name << "'";
            if (it == got.end()) continue;
            const auto d = test::compare(it->second, expected.get(name));
            EXPECT_FALSE(d.shape_mismatch) << name << ": " << it->second.describe();
            EXPECT_LE(d.max_abs, tol.of(name)) << name << ": " << d.str();
            std::printf("  %-40s %s (tolerance %.3g)\n", name.c_str(), d.str().c_str(), tol.of(name));
            ++compared;
        }
    }
    return compared;
}

void run_named_case(const std::string& case_name) {
    const auto dirs = vae_fixtures();
    ASSERT_FALSE(dirs.empty()) << "no VAE fixture under " << test::fixtures_root();
    int fixtures_with_case = 0;
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.string() + " case " + case_name);
        const Json tiling_json = load_json_file((dir / "tiling.json").string());
        if (!tiling_json["cases"].contains(case_name)) continue;
        ++fixtures_with_case;
        EXPECT_GT(run_case(dir, case_name), 0) << "nothing compared";
    }
    EXPECT_GT(fixtures_with_case, 0) << "no fixture has case " << case_name;
}

}  // namespace

TEST(VAEParity, FixturesExist) {
    // A parity test that finds nothing to compare must fail, not pass vacuously.
    EXPECT_FALSE(vae_fixtures().empty()) << "no VAE fixture under " << test::fixtures_root();
}

TEST(VAEParity, Encode) {
    run_named_case("encode");
}
TEST(VAEParity, Decode) {
    run_named_case("decode");
}
TEST(VAEParity, DecodeTiled) {
    run_named_case("decode_tiled");
}
TEST(VAEParity, DecodeTiledSpatial) {
    run_named_case("decode_tiled_spatial");
}
TEST(VAEParity, EncodeTiled) {
    run_named_case("encode_tiled");
}

// Cases a fixture lists beyond the five above run too, so a new folder's extra cases are not ignored.
TEST(VAEParity, EveryOtherListedCase) {
    const std::set<std::string> named{"encode", "decode", "decode_tiled", "decode_tiled_spatial", "encode_tiled"};
    for (const fs::path& dir : vae_fixtures()) {
        const Json tiling_json = load_json_file((dir / "tiling.json").string());
        for (auto it = tiling_json["cases"].begin(); it != tiling_json["cases"].end(); ++it) {
            if (named.count(it.key())) continue;
            SCOPED_TRACE(dir.string() + " case " + it.key());
            EXPECT_GT(run_case(dir, it.key()), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Long videos: a small random VAE, 70 latent frames (277 output frames, past the ~193 where the original
// implementation failed), streamed with the default tiles.

namespace {

HunyuanVideoVAEConfig tiny_config() {
    HunyuanVideoVAEConfig c;
    c.block_out_channels = {8, 8, 8, 8};
    c.norm_num_groups = 4;
    c.layers_per_block = 1;
    c.latent_channels = 4;
    return c;
}

Tensor random_latents(const Shape& s, uint64_t seed) {
    Tensor z = Tensor::empty(s, DType::F32);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int64_t i = 0; i < z.numel(); ++i) z.data<float>()[i] = n(rng);
    return z;
}

// The reference's _temporal_tiled_decode written as plainly as upstream (every tile decoded and kept, then
// blended in place in order, cropped, concatenated, cut), with decode_untiled as the decoder: what the
// streamed frames must equal.
Tensor whole_video_reference(const HunyuanVideoVAE& vae, Backend& be, const Tensor& z, const VAETiling& t) {
    const int64_t T = z.dim(2), ls = t.tile_sample_stride_num_frames / 4, lm = t.tile_sample_min_num_frames / 4;
    const int64_t blend_extent = t.tile_sample_min_num_frames - t.tile_sample_stride_num_frames;
    std::vector<Tensor> row;
    for (int64_t i = 0; i < T; i += ls) {
        Tensor d = vae.decode_untiled(be, z.slice(2, i, std::min(i + lm + 1, T)).contiguous());
        if (i > 0) d = d.slice(2, 1, d.dim(2)).contiguous();
        row.push_back(d);
    }
    std::vector<Tensor> parts;
    for (size_t k = 0; k < row.size(); ++k) {
        if (k > 0) {
            const Tensor& a = row[k - 1];
            Tensor& b = row[k];
            const int64_t e = std::min({a.dim(2), b.dim(2), blend_extent});
            for (int64_t x = 0; x < e; ++x) {
                Tensor bs = b.select(2, x).contiguous();
                const Tensor as = a.select(2, a.dim(2) - e + x).contiguous();
                for (int64_t q = 0; q < bs.numel(); ++q)
                    bs.data<float>()[q] = as.data<float>()[q] * float(1.0 - double(x) / double(e)) +
                                          bs.data<float>()[q] * float(double(x) / double(e));
                Tensor dst = b.select(2, x);
                dst.copy_from(bs);
            }
        }
        const int64_t keep =
            std::min(k > 0 ? t.tile_sample_stride_num_frames : t.tile_sample_stride_num_frames + 1, row[k].dim(2));
        parts.push_back(row[k].slice(2, 0, keep));
    }
    int64_t total = 0;
    for (auto& p : parts) total += p.dim(2);
    Tensor out = Tensor::empty({z.dim(0), 3, total, z.dim(3) * 8, z.dim(4) * 8}, DType::F32);
    concat(be, parts, 2, out);
    return out.slice(2, 0, (T - 1) * 4 + 1).contiguous();
}

}  // namespace

TEST(VAELongVideo, StreamedDecodeMatchesWholeVideoReferenceAndMemoryStaysFlat) {
    CpuBackend& be = cpu_backend();
    const HunyuanVideoVAE vae = HunyuanVideoVAE::random(tiny_config(), DType::F32, 7);
    const VAETiling tiling = VAETiling::enabled();  // the pipeline's defaults: 5-latent tiles, stride 3

    std::map<int64_t, size_t> peak_by_length;
    for (int64_t T : {35, 70}) {
        const Tensor z = random_latents({1, 4, T, 2, 3}, 100 + uint64_t(T));
        const int64_t n_frames = (T - 1) * 4 + 1;
        // Every streamed frame is kept in std::vectors, outside the tracked host allocator, so the measured
        // peak is the decoder's own.
        std::vector<std::vector<float>> frames;
        int64_t next = 0;
        size_t peak = 0;
        host_allocator().reset_peak();
        const size_t base = host_allocator().in_use_bytes();
        vae.decode_streaming(be, z, tiling, [&](const Tensor& f, int64_t first) {
            EXPECT_EQ(first, next) << "frames out of order";
            peak = std::max(peak, host_allocator().peak_bytes() - base);
            for (int64_t k = 0; k < f.dim(2); ++k) {
                const Tensor fr = f.select(2, k).contiguous();
                frames.emplace_back(fr.data<float>(), fr.data<float>() + fr.numel());
            }
            next += f.dim(2);
        });
        peak = std::max(peak, host_allocator().peak_bytes() - base);
        ASSERT_EQ(next, n_frames);
        peak_by_length[T] = peak;

        if (T == 70) {
            const Tensor want = whole_video_reference(vae, be, z, tiling);
            ASSERT_EQ(want.dim(2), n_frames);
            for (int64_t k = 0; k < n_frames; ++k) {
                const Tensor w = want.select(2, k).contiguous();
                double worst = 0;
                bool finite = true;
                for (int64_t q = 0; q < w.numel(); ++q) {
                    finite = finite && std::isfinite(frames[size_t(k)][size_t(q)]);
                    worst = std::max(worst, double(std::fabs(frames[size_t(k)][size_t(q)] - w.data<float>()[q])));
                }
                // Same decoder calls and the same f32 blend arithmetic in the same order: bit-identical is
                // expected; 1e-6 only allows a different rounding of the blend weights' product.
                ASSERT_TRUE(finite) << "frame " << k;
                ASSERT_LE(worst, 1e-6) << "frame " << k << " of " << n_frames;
            }
        }
    }
    std::printf("streamed decode peak: %s for 35 latent frames, %s for 70\n",
                format_bytes(double(peak_by_length[35])).c_str(), format_bytes(double(peak_by_length[70])).c_str());
    // Flat: doubling the length may not grow the peak (a few % for allocator rounding and the larger z).
    EXPECT_LE(double(peak_by_length[70]), 1.05 * double(peak_by_length[35]) + 4096);
}

// ---------------------------------------------------------------------------------------------------------
// Bad input

namespace {

template <class F>
std::string input_error_of(F&& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(VAEBadInput, WrongChannelsAndFramesAreNamed) {
    CpuBackend& be = cpu_backend();
    const HunyuanVideoVAE vae = HunyuanVideoVAE::random(tiny_config(), DType::F32, 1);
    std::string e = input_error_of([&] { vae.decode(be, random_latents({1, 5, 2, 2, 2}, 1)); });
    EXPECT_NE(e.find("5 channels"), std::string::npos) << e;
    e = input_error_of([&] { vae.encode(be, random_latents({1, 4, 5, 16, 16}, 1)); });
    EXPECT_NE(e.find("4 channels"), std::string::npos) << e;
    e = input_error_of([&] { vae.encode(be, random_latents({1, 3, 6, 16, 16}, 1)); });
    EXPECT_NE(e.find("6 frames"), std::string::npos) << e;
    e = input_error_of([&] { vae.encode(be, random_latents({1, 3, 5, 12, 16}, 1)); });
    EXPECT_NE(e.find("multiples of 8"), std::string::npos) << e;
    e = input_error_of([&] { vae.decode(be, random_latents({1, 4, 2, 2}, 1)); });
    EXPECT_NE(e.find("[B, C, T, h, w]"), std::string::npos) << e;
    VAETiling bad = VAETiling::enabled();
    bad.tile_sample_stride_width = 512;
    e = input_error_of([&] { vae.decode(be, random_latents({1, 4, 2, 2, 2}, 1), bad); });
    EXPECT_NE(e.find("exceeds its tile size"), std::string::npos) << e;
}

TEST(VAEBadInput, MissingTensorIsNamed) {
    const auto dirs = vae_fixtures();
    ASSERT_FALSE(dirs.empty());
    const fs::path model = dirs.front() / "model";
    const fs::path dir = test::scratch_dir("vae_missing_tensor");
    fs::copy_file(model / "config.json", dir / "config.json");
    const WeightStore store = WeightStore::open(model.string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    const std::string dropped = "decoder.up_blocks.1.resnets.0.conv2.conv.weight";
    for (const std::string& name : store.names())
        if (name != dropped) tensors.emplace_back(name, store.get(name));
    write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors);
    const std::string e = input_error_of([&] { HunyuanVideoVAE::load(dir.string()); });
    EXPECT_NE(e.find(dropped), std::string::npos) << e;
    fs::remove_all(dir);
}

TEST(VAEBadInput, WrongClassNameIsNamed) {
    const fs::path dir = test::scratch_dir("vae_wrong_class");
    std::ofstream(dir / "config.json") << R"({"_class_name": "AutoencoderKL"})";
    const std::string e = input_error_of([&] { HunyuanVideoVAE::load(dir.string()); });
    EXPECT_NE(e.find("AutoencoderKL"), std::string::npos) << e;
    fs::remove_all(dir);
}
