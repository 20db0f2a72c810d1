// The preview of the video while it forms (issue 20): the step's denoised estimate x0 = latents - sigma *
// velocity through HunyuanVideo's latent-to-RGB map (pipeline/latent_preview.h), checked against the formula
// written out here on the pipeline fixtures' latents; previews at exactly the steps asked, with the right
// frames and size, in files replaced whole (pipeline/preview_files.h) and in the job's callback; bad --preview
// values refused naming the flag, leaving nothing behind; the same previews on the simulated device with streamed
// weights as on the CPU; and a video byte-identical to a run without previews.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "core/error.h"
#include "media/image.h"
#include "pipeline/demo_model.h"
#include "pipeline/latent_preview.h"
#include "pipeline/preview_files.h"
#include "pipeline/session.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"
#include "support/run_command.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

// The preview's pixels for latents x0 [1, 16, T, h, w], written out independently of the library: ComfyUI's
// Latent2RGBPreviewer (x0 . factors + bias) and preview_to_image (((v + 1) / 2).clamp(0, 1) * 255 cast to
// uint8), in double, at latent resolution: [T, h, w, 3].
std::vector<int> expected_pixels(const Tensor& x0) {
    const Tensor x = x0.contiguous();
    const int64_t T = x.dim(2), h = x.dim(3), w = x.dim(4), plane = T * h * w;
    std::vector<int> out(size_t(plane * 3));
    for (int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < 3; ++c) {
            double v = kHunyuanVideoLatentRgbBias[c];
            for (int k = 0; k < 16; ++k)
                v += double(x.data<float>()[k * plane + i]) * kHunyuanVideoLatentRgbFactors[k][c];
            out[size_t(i * 3 + c)] = int(std::clamp((v + 1.0) / 2.0, 0.0, 1.0) * 255.0);
        }
    return out;
}

// Largest |preview pixel - expected| over all pixels, reading each latent pixel's s x s block at every offset.
int max_pixel_error(const PreviewFrames& p, const Tensor& x0) {
    const std::vector<int> want = expected_pixels(x0);
    const int64_t h = x0.dim(3), w = x0.dim(4);
    int worst = 0;
    for (int64_t t = 0; t < p.frames; ++t)
        for (int64_t y = 0; y < p.height; ++y)
            for (int64_t x = 0; x < p.width; ++x)
                for (int c = 0; c < 3; ++c) {
                    const int got = p.frame(t)[(y * p.width + x) * 3 + c];
                    const int e = want[size_t(((t * h + y / p.upscale) * w + x / p.upscale) * 3 + c)];
                    worst = std::max(worst, std::abs(got - e));
                }
    return worst;
}

// The upscale rule, stated independently: the smallest s >= 1 with max(h, w) * s >= 240, at most 8.
int64_t expected_upscale(int64_t h, int64_t w) {
    int64_t s = 1;
    while (std::max(h, w) * s < 240 && s < 8) ++s;
    return s;
}

std::string read_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
}

std::string skyreels_binary() {
    return std::string(SKYREELS_BINARY_DIR) + "/skyreels";
}

SessionOptions demo_options() {
    SessionOptions o;
    o.demo = true;
    return o;
}

// An animated PNG read back chunk by chunk (the APNG specification): every CRC checked, the frame count and the
// loop from acTL, each frame's fcTL (size, delay) and its image, rebuilt as a plain PNG (IHDR, the frame's data as
// IDAT, IEND) and decoded by libpng. Sequence numbers must run 0, 1, 2, ... over fcTL and fdAT.
struct Apng {
    uint32_t frames = 0, plays = 0;
    std::vector<Image8> images;
    std::vector<std::pair<int, int>> delays;  // numerator, denominator
    bool crc_ok = true, sequence_ok = true;
};

uint32_t be32(const std::string& s, size_t pos) {
    return uint32_t(uint8_t(s[pos])) << 24 | uint32_t(uint8_t(s[pos + 1])) << 16 | uint32_t(uint8_t(s[pos + 2])) << 8 |
           uint8_t(s[pos + 3]);
}

uint32_t png_crc(const std::string& bytes) {
    uint32_t c = 0xffffffffu;
    for (unsigned char b : bytes) {
        c ^= b;
        for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

std::string png_chunk(const std::string& type, const std::string& data) {
    std::string out;
    for (int s = 24; s >= 0; s -= 8) out += char(data.size() >> s);
    const uint32_t crc = png_crc(type + data);
    out += type + data;
    for (int s = 24; s >= 0; s -= 8) out += char(crc >> s);
    return out;
}

Apng read_apng(const std::string& file) {
    Apng a;
    const std::string sig = file.substr(0, 8);
    std::string ihdr, frame_data;
    uint32_t next_sequence = 0;
    const auto finish_frame = [&] {
        if (frame_data.empty()) return;
        const std::string png = sig + png_chunk("IHDR", ihdr) + png_chunk("IDAT", frame_data) + png_chunk("IEND", "");
        a.images.push_back(decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(), "an APNG frame"));
        frame_data.clear();
    };
    for (size_t pos = 8; pos + 12 <= file.size();) {
        const uint32_t n = be32(file, pos);
        const std::string type = file.substr(pos + 4, 4), data = file.substr(pos + 8, n);
        a.crc_ok = a.crc_ok && be32(file, pos + 8 + n) == png_crc(type + data);
        if (type == "IHDR") ihdr = data;
        if (type == "acTL") a.frames = be32(data, 0), a.plays = be32(data, 4);
        if (type == "fcTL" || type == "fdAT") a.sequence_ok = a.sequence_ok && be32(data, 0) == next_sequence++;
        if (type == "fcTL") {
            finish_frame();
            a.delays.push_back(
                {uint8_t(data[20]) << 8 | uint8_t(data[21]), uint8_t(data[22]) << 8 | uint8_t(data[23])});
        }
        if (type == "IDAT") frame_data += data;
        if (type == "fdAT") frame_data += data.substr(4);
        pos += 12 + n;
    }
    finish_frame();
    return a;
}

// A tiny demo job: 64x64, 9 frames (3 latent frames of 8x8, drawn 8x: 64x64), `steps` steps.
Request demo_request(const Session& session, int steps) {
    Request r;
    r.generation.params = session.default_params(Task::T2V);
    r.generation.params.height = r.generation.params.width = 64;
    r.generation.params.num_frames = 9;
    r.generation.params.num_inference_steps = steps;
    r.generation.params.seed = 3;
    r.generation.prompt = "FPS-24, a lighthouse at dusk";
    return r;
}

}  // namespace

// ComfyUI's numbers in its own layout (rows: latent channels, columns R, G, B), a few entries typed here from
// comfy/latent_formats.py: a transposed or shifted table fails.
TEST(Preview, FactorsAreComfyUIsHunyuanVideoTable) {
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[0][0], -0.0395f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[0][2], 0.0445f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[1][1], 0.0795f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[10][1], 0.1627f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[12][0], -0.2315f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbFactors[15][2], -0.1703f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbBias[0], 0.0259f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbBias[1], -0.0192f);
    EXPECT_FLOAT_EQ(kHunyuanVideoLatentRgbBias[2], -0.0761f);
}

// On every pipeline fixture: (1) the reference's own data says x0 at the last step is the final latents
// (x_last - sigma_last * v_last == latents), which pins which sigma the estimate uses; (2) our run's estimate
// at every step is its latents before the step minus sigma_i times the guided velocity; (3) the preview of the
// reference's final latents equals the formula above, pixel for pixel, with T frames of (h s) x (w s).
// Tolerances: (1) and (2) one f32 rounding of the product and the difference (a few ulp of the values: 1e-6
// relative to their size, with room for FMA contraction); (3) one 8-bit level, where the library's f32 sum and
// this double sum fall on either side of an integer after scaling by 255.
TEST(Preview, LatentToRgbIsTheFormulaOnEveryPipelineFixture) {
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        SCOPED_TRACE(dir.string());
        const test::Fixture f = test::Fixture::open(dir);
        const int steps = f.params["num_inference_steps"].get<int>();
        const Tensor final_latents = f.output.get("latents").to(DType::F32).contiguous();
        const int64_t C = final_latents.dim(1);
        ASSERT_EQ(C, 16);

        // (1) The reference: x0 at the last step equals the final latents.
        const std::string last = "step" + std::to_string(steps - 1) + ".";
        const Tensor x_in = f.intermediates.get(last + "transformer_input").to(DType::F32);  // [B, C_in, T, h, w]
        const Tensor x = x_in.slice(0, 0, 1).slice(1, 0, C).contiguous();
        const Tensor v = f.intermediates.get(last + "noise_pred_cfg").to(DType::F32).contiguous();
        const float sigma = f.intermediates.get("sigmas").to(DType::F32).contiguous().data<float>()[steps - 1];
        Tensor ref_x0 = Tensor::empty(x.shape(), DType::F32);
        for (int64_t i = 0; i < x.numel(); ++i)
            ref_x0.data<float>()[i] = x.data<float>()[i] - sigma * v.data<float>()[i];
        const test::Diff d1 = test::compare(ref_x0, final_latents);
        EXPECT_LE(d1.max_abs, 1e-6 * std::max(1.0, d1.max_expected)) << d1.str();

        // (2) Our run: every step's estimate, against its own inputs.
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        GenerationRequest req = test::make_request(f, false);
        std::map<std::string, Tensor> seen;
        std::map<int, Tensor> x0s;
        req.after_step_denoised = [&](int done, const Tensor& t) { x0s[done] = t.clone(); };
        const PipelineHook hook = [&](std::string_view name, const Tensor& t) { seen[std::string(name)] = t.clone(); };
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
        const Tensor ours = pipe.generate(
            cpu_backend(), req, {}, [](const Tensor&, int64_t) {}, hook);
        ASSERT_EQ(int(x0s.size()), steps);  // no denoised_due: every step
        for (int i = 0; i < steps; ++i)
            EXPECT_TRUE(test::bit_identical(seen.at("step" + std::to_string(i) + ".denoised"), x0s.at(i + 1)))
                << "the hook's step" << i << ".denoised is not the callback's x0";
        FlowMatchEulerScheduler sched(pipe.components().scheduler);
        sched.set_timesteps(steps);
        for (int i = 0; i < steps; ++i) {
            const std::string s = "step" + std::to_string(i) + ".";
            const Tensor xi = seen.at(s + "transformer_input").slice(0, 0, 1).slice(1, 0, C).contiguous();
            const Tensor vi = seen.at(s + "noise_pred_cfg").contiguous();
            Tensor want = Tensor::empty(xi.shape(), DType::F32);
            for (int64_t k = 0; k < xi.numel(); ++k)
                want.data<float>()[k] = xi.data<float>()[k] - sched.sigmas()[size_t(i)] * vi.data<float>()[k];
            const test::Diff d2 = test::compare(x0s.at(i + 1), want);
            EXPECT_LE(d2.max_abs, 1e-6 * std::max(1.0, d2.max_expected)) << s << d2.str();
        }
        const test::Diff d_last = test::compare(x0s.at(steps), ours);
        EXPECT_LE(d_last.max_abs, 1e-6 * std::max(1.0, d_last.max_expected)) << "last x0 vs final: " << d_last.str();

        // (3) The map, on the reference's final latents.
        const PreviewFrames p = latent_preview(final_latents, steps, steps);
        const int64_t s = expected_upscale(final_latents.dim(3), final_latents.dim(4));
        EXPECT_EQ(p.frames, final_latents.dim(2));
        EXPECT_EQ(p.upscale, s);
        EXPECT_EQ(p.height, final_latents.dim(3) * s);
        EXPECT_EQ(p.width, final_latents.dim(4) * s);
        EXPECT_EQ(p.rgb.size(), size_t(p.frames * p.height * p.width * 3));
        EXPECT_LE(max_pixel_error(p, final_latents), 1);
        // Not a constant image: the map sees the latents (a wrong stride would read one channel for all).
        std::set<int> values(p.rgb.begin(), p.rgb.end());
        EXPECT_GT(values.size(), 8u);
        std::printf("  %s: %d steps, preview of %lld frames at %lldx%lld, %zu distinct levels\n",
                    dir.filename().c_str(), steps, (long long)p.frames, (long long)p.width, (long long)p.height,
                    values.size());
        ++checked;
    }
    EXPECT_GT(checked, 0) << "no pipeline fixture under " << test::fixtures_root();
}

// The rule and the tiling on their own: previews due at every N and at the last step; the contact sheet puts
// frame t at column t % cols, row t / cols of a ceil(sqrt(T))-column grid, black past the last frame.
TEST(Preview, DueStepsAndContactSheet) {
    std::vector<int> due;
    for (int d = 1; d <= 7; ++d)
        if (preview_due(d, 7, 3)) due.push_back(d);
    EXPECT_EQ(due, (std::vector<int>{3, 6, 7}));
    EXPECT_EQ(preview_upscale(68, 120), 2);  // 544x960: 136x240 frames
    EXPECT_EQ(preview_upscale(4, 6), 8);     // never past the video's own size
    EXPECT_EQ(preview_upscale(300, 200), 1);

    PreviewFrames p;
    p.frames = 5;
    p.height = 2;
    p.width = 3;
    p.rgb.resize(size_t(5 * 2 * 3 * 3));
    for (size_t i = 0; i < p.rgb.size(); ++i) p.rgb[i] = uint8_t(1 + i / (2 * 3 * 3));  // frame t is all t + 1
    const Image8 sheet = contact_sheet(p);
    ASSERT_EQ(sheet.width, 3 * 3);  // ceil(sqrt(5)) = 3 columns, 2 rows
    ASSERT_EQ(sheet.height, 2 * 2);
    for (int64_t y = 0; y < sheet.height; ++y)
        for (int64_t x = 0; x < sheet.width; ++x) {
            const int64_t t = (y / 2) * 3 + x / 3;
            EXPECT_EQ(sheet.rgb[size_t((y * sheet.width + x) * 3)], t < 5 ? t + 1 : 0) << x << "," << y;
        }
}

// A Session job of 7 steps with a preview every 3: the callback at steps 3, 6 and 7, and the loop forms the
// denoised estimate on those steps only (the hook's "stepN.denoised"), each with the latent frames
// at the expected size; at each callback the folder already holds exactly that preview (its frames decode to
// the callback's pixels), an earlier, longer preview in the folder is replaced whole, and no temporary folder
// is left beside it, and the folder has the mode a plain mkdir would give. The same with a .png target: the file
// is that step's contact sheet, and with a .apng target an animation of that step's frames.
TEST(Preview, WrittenAtTheStepsAskedInFolderSheetAndAnimation) {
    const fs::path dir = test::scratch_dir("preview_steps");
    Session session(demo_options());
    for (const std::string name : {"preview", "preview.png", "preview.apng"}) {
        SCOPED_TRACE(name);
        const bool sheet = name == "preview.png", animation = name == "preview.apng";
        Request r = demo_request(session, 7);
        r.preview_every = 3;
        r.preview_path = (dir / name).string();
        if (name == "preview") {  // an earlier preview with more frames: replaced, not mixed
            fs::create_directories(r.preview_path);
            for (int i = 0; i < 10; ++i) std::ofstream(fs::path(r.preview_path) / fmt::format("frame_{:05d}.png", i));
        }
        std::vector<int> steps, estimated;  // the steps previewed, and those whose x0 the loop formed
        const PipelineHook hook = [&](std::string_view n, const Tensor&) {
            if (n.ends_with(".denoised")) estimated.push_back(std::stoi(std::string(n.substr(4))) + 1);
        };
        session.generate(r, {.hook = hook, .preview = [&](const PreviewFrames& p) {
                                 steps.push_back(p.step);
                                 EXPECT_EQ(p.total_steps, 7);
                                 EXPECT_EQ(p.frames, 3);
                                 EXPECT_EQ(p.height, 64);
                                 EXPECT_EQ(p.width, 64);
                                 if (animation) {
                                     const Apng a = read_apng(read_bytes(r.preview_path));
                                     EXPECT_TRUE(a.crc_ok && a.sequence_ok);
                                     EXPECT_EQ(a.frames, 3u);
                                     EXPECT_EQ(a.plays, 0u);  // loops
                                     ASSERT_EQ(a.images.size(), 3u);
                                     for (int64_t t = 0; t < p.frames; ++t) {
                                         EXPECT_EQ(a.delays[size_t(t)], (std::pair<int, int>{1, 6}));
                                         EXPECT_TRUE(a.images[size_t(t)].rgb == p.frame_image(t).rgb)
                                             << "animation frame " << t << " is not step " << p.step << "'s";
                                     }
                                     // Viewers without APNG show the default image: frame 0.
                                     EXPECT_TRUE(load_image(r.preview_path).rgb == p.frame_image(0).rgb);
                                 } else if (sheet) {
                                     const Image8 file = load_image(r.preview_path);
                                     const Image8 want = contact_sheet(p);
                                     EXPECT_EQ(file.width, want.width);
                                     EXPECT_EQ(file.height, want.height);
                                     EXPECT_TRUE(file.rgb == want.rgb) << "the sheet is not step " << p.step << "'s";
                                 } else {
                                     EXPECT_EQ(listing(r.preview_path).size(), 3u);
                                     for (int64_t t = 0; t < p.frames; ++t) {
                                         const Image8 file = load_image(
                                             (fs::path(r.preview_path) / fmt::format("frame_{:05d}.png", t)).string());
                                         EXPECT_EQ(file.width, 64);
                                         EXPECT_EQ(file.height, 64);
                                         EXPECT_TRUE(file.rgb == p.frame_image(t).rgb)
                                             << "frame " << t << " is not step " << p.step << "'s";
                                     }
                                 }
                             }});
        EXPECT_EQ(steps, (std::vector<int>{3, 6, 7}));
        EXPECT_EQ(estimated, (std::vector<int>{3, 6, 7})) << "x0 formed on a step with no preview due";
        if (name == "preview") {  // the mode a plain mkdir gives (mkdtemp's 0700 would keep a web server out)
            const mode_t mask = ::umask(0);
            ::umask(mask);
            EXPECT_EQ(fs::status(r.preview_path).permissions(), fs::perms(0777 & ~mask));
        }
    }
    EXPECT_EQ(listing(dir), (std::set<std::string>{"preview", "preview.png", "preview.apng"}))
        << "a temporary was left behind";
}

// On the simulated accelerator, with the transformer streamed in blocks (generate --demo-size large under 72 MiB,
// as scripts/demo.sh runs it), the previews are the CPU run's byte for byte: the estimate is taken from the host
// copy of the loop's values, whatever device ran the transformer and however its weights moved.
TEST(Preview, OnTheSimulatedDeviceTheyAreTheCpusPreviews) {
    std::vector<std::vector<uint8_t>> cpu, sim;
    for (auto* out : {&cpu, &sim}) {
        SessionOptions o = demo_options();
        o.demo_transformer = {.heads = 6, .head_dim = 64, .dual_blocks = 2, .single_blocks = 4};  // 73 MiB
        if (out == &sim) {
            o.device = "sim";
            o.memory.offload = OffloadMode::Block;
            o.memory.vram_budget = size_t(72) << 20;
        }
        Session session(o);
        Request r = demo_request(session, 4);
        r.preview_every = 2;
        const JobResult result =
            session.generate(r, {.preview = [&](const PreviewFrames& p) { out->push_back(p.rgb); }});
        if (out == &sim) {
            ASSERT_TRUE(result.device_report);
            EXPECT_GT(result.device_report->streamed_bytes_per_step, 0.0) << "nothing was streamed";
        }
    }
    ASSERT_EQ(cpu.size(), 2u);
    EXPECT_TRUE(cpu == sim);
}

// Bad values are refused before any work, naming the flag: --preview-every 0, a folder that does not exist, a
// file where a folder should be, a folder of other files (left as it was); the Session and the command line
// alike, and the command line leaves no file behind.
TEST(Preview, BadValuesAreErrorsNamingTheFlagAndLeaveNothing) {
    const fs::path dir = test::scratch_dir("preview_bad");
    std::ofstream(dir / "notes.txt") << "mine";
    fs::create_directories(dir / "photos");
    std::ofstream(dir / "photos" / "cat.jpg") << "not a frame";
    Session session(demo_options());
    const auto refused = [&](const std::string& path, int every, const std::string& flag) {
        Request r = demo_request(session, 2);
        r.preview_path = path;
        r.preview_every = every;
        try {
            session.generate(r);
            ADD_FAILURE() << path << " every " << every << " was accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
        }
    };
    refused((dir / "p").string(), 0, "--preview-every 0");
    refused((dir / "missing" / "p").string(), 5, "--preview " + (dir / "missing" / "p").string());
    refused((dir / "notes.txt" / "p.png").string(), 5, "--preview");
    refused((dir / "photos").string(), 5, "--preview");
    EXPECT_EQ(listing(dir), (std::set<std::string>{"notes.txt", "photos"}));
    EXPECT_EQ(listing(dir / "photos"), (std::set<std::string>{"cat.jpg"}));

    const std::string common =
        fmt::format("{} generate --demo --quiet --height 64 --width 64 --frames 9 --steps 2 --out '{}'",
                    skyreels_binary(), (dir / "v.mp4").string());
    for (const auto& [flags, name] : std::vector<std::pair<std::string, std::string>>{
             {fmt::format("--preview '{}' --preview-every 0", (dir / "p").string()), "--preview-every"},
             {fmt::format("--preview '{}'", (dir / "missing" / "p").string()), "--preview"},
             {fmt::format("--preview '{}'", (dir / "photos").string()), "--preview"},
             {"--preview-every 2", "--preview-every needs --preview"}}) {
        const test::CommandResult c = test::run_command(common + " " + flags);
        EXPECT_NE(c.code, 0) << flags << "\n" << c.output;
        EXPECT_NE(c.output.find(name), std::string::npos) << flags << "\n" << c.output;
    }
    EXPECT_EQ(listing(dir), (std::set<std::string>{"notes.txt", "photos"}));
}

// Previews only read the loop's values: the MP4 and every PNG frame of a run with a preview after every step
// are byte-identical to a run without.
TEST(Preview, TheVideoIsByteIdenticalWithAndWithoutPreviews) {
    const fs::path dir = test::scratch_dir("preview_same");
    const std::string common = fmt::format(
        "{} generate --demo --quiet --height 64 --width 64 --frames 9 --steps 4 --seed 9", skyreels_binary());
    const test::CommandResult plain = test::run_command(
        fmt::format("{} --out '{}' --png-dir '{}'", common, (dir / "plain.mp4").string(), (dir / "plain").string()));
    ASSERT_EQ(plain.code, 0) << plain.output;
    const test::CommandResult with = test::run_command(
        fmt::format("{} --out '{}' --png-dir '{}' --preview '{}' --preview-every 1", common,
                    (dir / "with.mp4").string(), (dir / "with").string(), (dir / "preview.png").string()));
    ASSERT_EQ(with.code, 0) << with.output;
    ASSERT_TRUE(fs::exists(dir / "preview.png"));
    EXPECT_TRUE(read_bytes(dir / "plain.mp4") == read_bytes(dir / "with.mp4")) << "the MP4s differ";
    int frames = 0;
    for (const auto& e : fs::directory_iterator(dir / "plain")) {
        EXPECT_TRUE(read_bytes(e.path()) == read_bytes(dir / "with" / e.path().filename())) << e.path().filename();
        ++frames;
    }
    EXPECT_EQ(frames, 9);
}
