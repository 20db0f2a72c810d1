// Parallel runs on the CPU backend, as the ranks of one MPI job (ctest runs this binary under
// `mpirun --oversubscribe -np 2`, `-np 3` and `-np 4`; tests/support/mpi_main.cpp). Each rank computes the
// one-rank result itself and compares its own share of the parallel one with it, so no rank waits on another
// to judge. Sizes come from the fixtures; a mesh the fixture's head count cannot split is skipped, by name.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "backends/cpu/cpu_backend.h"
#include "models/hunyuan_video_vae.h"
#include "models/sequence_parallel.h"
#include "runtime/mpi_communicator.h"
#include "runtime/parallel_mesh.h"
#include "support/compare.h"
#include "support/fixtures.h"
#include "support/pipeline_fixture.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
    return t;
}

using test::bit_identical;

// The meshes of P ranks a pipeline can run in (CFG only, Ulysses only, both): cfg=2 needs guidance, and
// ulysses must divide the heads.
std::vector<MeshShape> pipeline_meshes(int P, bool do_cfg, int64_t heads) {
    std::vector<MeshShape> meshes;
    for (int cfg : {1, 2})
        for (int ulysses : {1, 2, 3, 4}) {
            const MeshShape shape{cfg, ulysses};
            if (shape.ranks() == P && (cfg == 1 || do_cfg) && heads % ulysses == 0) meshes.push_back(shape);
        }
    return meshes;
}

// Prints on rank 0 only (the others run the same lines).
template <class... A>
void say(const MpiCommunicator& world, const char* format, A... args) {
    if (world.rank() == 0) std::printf(format, args...);
}

}  // namespace

TEST(Mpi, CollectivesMoveWhatEachRankSent) {
    const auto world = MpiRuntime::world();
    const int P = world->size(), me = world->rank();
    // all_to_all: chunk p of rank r's send holds r * 1000 + p * 10 + i.
    const int64_t k = 3;
    Tensor send = Tensor::empty({P, k}, DType::F32), recv = Tensor::empty({P, k}, DType::F32);
    for (int p = 0; p < P; ++p)
        for (int64_t i = 0; i < k; ++i) send.data<float>()[p * k + i] = float(me * 1000 + p * 10 + i);
    world->all_to_all(send, recv);
    for (int p = 0; p < P; ++p)
        for (int64_t i = 0; i < k; ++i) EXPECT_EQ(recv.data<float>()[p * k + i], float(p * 1000 + me * 10 + i));
    // all_gather, broadcast.
    Tensor mine = Tensor::from_vector({float(me), float(-me)}, {2}), all = Tensor::empty({P, 2}, DType::F32);
    world->all_gather(mine, all);
    for (int p = 0; p < P; ++p) EXPECT_EQ(all.data<float>()[2 * p + 1], float(-p));
    Tensor b = Tensor::from_vector({float(me + 7)}, {1});
    world->broadcast(b, P - 1);
    EXPECT_EQ(b.data<float>()[0], float(P - 1 + 7));
    // gather of a different size per rank onto rank 0.
    Tensor part = Tensor::from_vector(std::vector<float>(size_t(me + 1), float(me)), {me + 1});
    std::vector<Tensor> parts;
    if (me == 0) {
        for (int p = 0; p < P; ++p) parts.push_back(Tensor::empty({p + 1}, DType::F32));
    }
    world->gather(part, parts, 0);
    if (me == 0) {
        for (int p = 0; p < P; ++p) EXPECT_EQ(parts[size_t(p)].data<float>()[p], float(p));
    }
    // Host values and sub-communicators.
    EXPECT_EQ(world->sum(me), int64_t(P) * (P - 1) / 2);
    EXPECT_EQ(world->max(me), P - 1);
    EXPECT_EQ(world->all_strings(std::string(size_t(me), 'x')).back(), std::string(size_t(P - 1), 'x'));
    const auto host = world->split_by_host();
    EXPECT_EQ(host->sum(1), P) << "every rank of this test runs on this host";
    const auto halves = world->split(me % 2, me);
    EXPECT_EQ(halves->size(), (P + 1 - me % 2) / 2);
    EXPECT_EQ(halves->rank(), me / 2);
}

TEST(Mpi, MeshesAreChosenAsSkyReelsInferAndCheckedAgainstTheHeads) {
    EXPECT_EQ(choose_mesh(2, {}, true, 24), (MeshShape{2, 1}));
    EXPECT_EQ(choose_mesh(4, {}, true, 24), (MeshShape{2, 2}));
    EXPECT_EQ(choose_mesh(8, {}, true, 24), (MeshShape{2, 4}));
    EXPECT_EQ(choose_mesh(8, {}, false, 24), (MeshShape{1, 8}));
    EXPECT_EQ(choose_mesh(3, {}, true, 24), (MeshShape{1, 3}));
    EXPECT_EQ(choose_mesh(4, parse_mesh_spec("ulysses=4"), true, 24), (MeshShape{1, 4}));
    EXPECT_THROW(choose_mesh(5, {}, true, 24), InputError);                                  // 5 does not divide 24
    EXPECT_THROW(choose_mesh(4, parse_mesh_spec("cfg=2,ulysses=4"), true, 24), InputError);  // 8 != 4
    EXPECT_THROW(choose_mesh(2, parse_mesh_spec("cfg=2"), false, 24), InputError);           // no guidance rows
    EXPECT_THROW(parse_mesh_spec("tensor=2"), InputError);
    EXPECT_THROW(parse_mesh_spec("cfg=two"), InputError);
}

// Ulysses attention against one rank's: 2P heads, a video token count that the group does not divide (the
// padding rows are masked keys and dropped queries), text replicated with different valid lengths per batch
// row, and the QK norm + RoPE prologue. Each rank compares its rows.
TEST(Mpi, UlyssesAttentionMatchesOneRank) {
    const auto world = MpiRuntime::world();
    const int64_t P = world->size(), B = 2, H = 2 * P, hd = 16, D = H * hd, N = 3 * P + 1, L = 5;
    const Tensor q = random_tensor({B, N + L, D}, 1), k = random_tensor({B, N + L, D}, 2),
                 v = random_tensor({B, N + L, D}, 3);
    const Tensor wq = random_tensor({hd}, 4, 0.2f), wk = random_tensor({hd}, 5, 0.2f);
    const Tensor wq_text = random_tensor({hd}, 6, 0.2f), wk_text = random_tensor({hd}, 7, 0.2f);
    Tensor cos = random_tensor({N, hd}, 8), sin = random_tensor({N, hd}, 9);
    QkNormRope qk;
    qk.q_weight = {&wq, &wq_text};
    qk.k_weight = {&wk, &wk_text};
    qk.cos = &cos;
    qk.sin = &sin;
    qk.n_rope = N;
    AttentionMask mask;
    mask.kv_len = {N + L, N + 3};
    const float scale = 0.25f;
    Backend& be = cpu_backend();
    auto heads = [&](const Tensor& t) { return t.unflatten(2, H, hd).permute({0, 2, 1, 3}); };
    Tensor reference = Tensor::empty({B, N + L, D}, DType::F32);
    {
        Tensor o = heads(reference);
        be.attention(heads(q), heads(k), heads(v), o, mask, scale, qk);
    }
    const SequenceShard shard{.tokens = N, .degree = P, .rank = world->rank()};
    const int64_t n = shard.rows(), valid = shard.valid_rows();
    auto local = [&](const Tensor& full) {  // this rank's rows (padding: copies of row 0), then the text rows
        Tensor t = Tensor::empty({B, n + L, D}, DType::F32);
        for (int64_t row = 0; row < n; ++row) {
            Tensor dst = t.slice(1, row, row + 1);
            const int64_t from = row < valid ? shard.begin() + row : 0;
            dst.copy_from(full.slice(1, from, from + 1));
        }
        Tensor text = t.slice(1, n, n + L);
        text.copy_from(full.slice(1, N, N + L));
        return t;
    };
    Tensor out = Tensor::empty({B, n + L, D}, DType::F32);
    sequence_parallel_attention(be, *world, shard, H, local(q), local(k), local(v), out, mask, scale, &qk);
    const test::Diff video = test::compare(out.slice(1, 0, valid).contiguous(),
                                           reference.slice(1, shard.begin(), shard.begin() + valid).contiguous());
    const test::Diff text =
        test::compare(out.slice(1, n, n + L).contiguous(), reference.slice(1, N, N + L).contiguous());
    // The same per-head products over the same keys in the same order, masked padding included: equal to one
    // rank's up to the CPU GEMM's choice of kernel by the query tile's row count, which the longer (padded)
    // sequence can change: the same sums in another order, a few f32 ulps of values below 1 (2^-23 = 1.2e-7).
    const double tolerance = 8 * 1.2e-7;
    EXPECT_LE(video.max_abs, tolerance) << video.str();
    EXPECT_LE(text.max_abs, tolerance) << text.str();
    say(*world, "  %lld ranks, %lld heads, %lld video tokens (%lld per rank, padded), %lld text: max_abs %g / %g\n",
        (long long)P, (long long)H, (long long)N, (long long)n, (long long)L, video.max_abs, text.max_abs);
}

// Every transformer fixture whose heads divide among the ranks: the sequence-parallel forward on every rank
// against the one-rank forward and the reference output, within the fixture's tolerance.
TEST(Mpi, TransformerFixturesMatchOneRank) {
    const auto world = MpiRuntime::world();
    const int P = world->size();
    int checked = 0;
    for (const fs::path& dir : test::find_fixture_dirs(test::is_transformer_fixture)) {
        const auto model = HunyuanVideoTransformer::load((dir / "model").string());
        const int64_t heads = model.config().num_attention_heads;
        if (heads % P != 0) {
            say(*world, "  %s: %lld heads do not divide among %d ranks: skipped\n", dir.filename().c_str(),
                (long long)heads, P);
            continue;
        }
        double tolerance = 5e-4;
        if (fs::exists(dir / "tolerances.json")) {
            const Json j = load_json_file((dir / "tolerances.json").string());
            if (j.contains("suggested_max_abs_sample")) tolerance = j["suggested_max_abs_sample"].get<double>();
        }
        const WeightStore inputs = WeightStore::open((dir / "inputs.safetensors").string());
        const WeightStore output = WeightStore::open((dir / "output.safetensors").string());
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
        TransformerInputs in = test::read_transformer_inputs(inputs);
        const Tensor one = model.forward(cpu_backend(), in);
        in.sequence_parallel = world.get();
        const Tensor split = model.forward(cpu_backend(), in);
        const test::Diff vs_one = test::compare(split, one), vs_ref = test::compare(split, output.get("sample"));
        EXPECT_LE(vs_one.max_abs, tolerance) << dir << ": " << vs_one.str();
        EXPECT_LE(vs_ref.max_abs, tolerance) << dir << ": " << vs_ref.str();
        say(*world, "  %s over %d ranks: max_abs %.3g vs one rank, %.3g vs reference (tolerance %.3g)\n",
            dir.filename().c_str(), P, vs_one.max_abs, vs_ref.max_abs, tolerance);
        ++checked;
    }
    if (checked == 0) GTEST_SKIP() << "no transformer fixture has a head count that " << P << " ranks divide";
}

// Both pipeline fixtures end to end in every mesh the world and the fixture allow (CFG only, Ulysses only,
// both): final latents on every rank and the video on rank 0 within the fixture's tolerances of one rank's.
TEST(Mpi, PipelineFixturesInEveryMesh) {
    const auto world = MpiRuntime::world();
    const int P = world->size();
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        const test::Fixture f = test::Fixture::open(dir);
        const test::Tolerances tol = test::read_tolerances(dir);
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        const GenerationRequest req = test::make_request(f, false);
        const int64_t heads = pipe.components().transformer->config().num_attention_heads;
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
        auto run = [&](const ParallelGroups& groups, Tensor* video) {
            const GenerationParams& p = req.params;
            *video = Tensor::zeros({1, 3, p.num_frames, p.height, p.width}, DType::F32);
            return pipe.generate(
                cpu_backend(), req, {},
                [&](const Tensor& frames, int64_t first) {
                    Tensor dst = video->slice(2, first, first + frames.dim(2));
                    dst.copy_from(frames);
                },
                {}, nullptr, groups);
        };
        Tensor one_video, video;
        const Tensor one = run({}, &one_video);
        for (const MeshShape& shape : pipeline_meshes(P, req.params.do_cfg(), heads)) {
            const ParallelMesh mesh(*world, shape);
            const Tensor latents = run(mesh.groups(), &video);
            const test::Diff dl = test::compare(latents, one);
            EXPECT_LE(dl.max_abs, tol.of("latents")) << dir << " " << shape.str() << ": " << dl.str();
            double video_diff = 0;
            if (world->rank() == 0) {
                const test::Diff dv = test::compare(video, one_video);
                EXPECT_LE(dv.max_abs, tol.of("video")) << dir << " " << shape.str() << ": " << dv.str();
                video_diff = dv.max_abs;
            }
            say(*world, "  %s %s: latents max_abs %.3g (tolerance %.3g), video %.3g (tolerance %.3g)\n",
                dir.filename().c_str(), shape.str().c_str(), dl.max_abs, tol.of("latents"), video_diff,
                tol.of("video"));
            ++checked;
        }
    }
    if (checked == 0) GTEST_SKIP() << "no mesh of " << P << " ranks splits the pipeline fixtures";
}

// Step caching in every mesh: the ranks gather their partial sums, so every rank of a CFG pair or a
// sequence group makes the decisions one rank makes (the same skipped steps; a moderate threshold that skips
// some steps and a huge one that skips every unforced step), never waiting on a rank that decided otherwise,
// and the latents stay within the fixture's tolerance of one rank's cached run (the fixture's bound for its
// final latents; the parallel runs match one rank far closer, to the bit on the CPU so far).
TEST(Mpi, StepCacheDecidesAsOneRankInEveryMesh) {
    const auto world = MpiRuntime::world();
    const int P = world->size();
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        const test::Fixture f = test::Fixture::open(dir);
        const test::Tolerances tol = test::read_tolerances(dir);
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        const int64_t heads = pipe.components().transformer->config().num_attention_heads;
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
        for (const char* kind : {"teacache:0.15", "teacache:1e9", "fbcache:1e9"}) {
            GenerationRequest req = test::make_request(f, false);
            req.params.num_inference_steps = 10;  // steps to skip (the fixtures run 4, two of them forced)
            req.params.cache = parse_step_cache(kind, "--cache");
            std::vector<int> skipped;
            req.after_cached_loop = [&](const StepCache& c) { skipped = c.skipped_steps(); };
            const Tensor one = pipe.generate(cpu_backend(), req, {}, {});
            const std::vector<int> one_skipped = skipped;
            for (const MeshShape& shape : pipeline_meshes(P, req.params.do_cfg(), heads)) {
                const ParallelMesh mesh(*world, shape);
                skipped.clear();
                const Tensor latents = pipe.generate(cpu_backend(), req, {}, {}, {}, nullptr, mesh.groups());
                EXPECT_EQ(skipped, one_skipped) << dir << " " << shape.str() << " " << kind;
                const test::Diff dl = test::compare(latents, one);
                EXPECT_LE(dl.max_abs, tol.of("latents"))
                    << dir << " " << shape.str() << " " << kind << ": " << dl.str();
                say(*world, "  %s %s %s: skipped %zu steps as one rank, latents max_abs %.3g\n", dir.filename().c_str(),
                    shape.str().c_str(), kind, skipped.size(), dl.max_abs);
                ++checked;
            }
        }
    }
    if (checked == 0) GTEST_SKIP() << "no mesh of " << P << " ranks splits the pipeline fixtures";
}

// A cached run resumed in every mesh (pipeline.h StepCacheReplay): each rank replays the saved calls for its
// own part of the cache's state (its guidance row, its tokens) without a collective, so the resumed run skips
// what the uninterrupted one did and ends with its latents bit for bit; resumed after every step, so both kinds
// of replay run (after a computed step; after a skipped one, which TeaCache replays too). The thresholds skip
// some steps (1e9: every step the rules do not force) whatever the fixture.
TEST(Mpi, CachedRunResumesInEveryMesh) {
    const auto world = MpiRuntime::world();
    const int P = world->size();
    int checked = 0;
    for (const fs::path& dir : test::pipeline_fixtures()) {
        const test::Fixture f = test::Fixture::open(dir);
        const SkyReelsPipeline pipe = test::load_pipeline(f);
        const int64_t heads = pipe.components().transformer->config().num_attention_heads;
        cpu_backend().set_gemm_precision(GemmPrecision::F32);
        for (const char* kind : {"teacache:0.15", "teacache:1e9", "fbcache:1e9"}) {
            GenerationRequest req = test::make_request(f, false);
            req.params.num_inference_steps = 6;
            req.params.cache = parse_step_cache(kind, "--cache");
            std::vector<int> skipped;
            req.after_cached_loop = [&](const StepCache& c) { skipped = c.skipped_steps(); };
            for (const MeshShape& shape : pipeline_meshes(P, req.params.do_cfg(), heads)) {
                const ParallelMesh mesh(*world, shape);
                std::vector<Tensor> after;  // the latents after each step, and what rebuilds the cache there
                std::vector<std::shared_ptr<const StepCacheReplay>> replays;
                GenerationRequest full_req = req;
                full_req.after_step = [&](const StepDone& d) {
                    after.push_back(d.latents.clone());
                    ASSERT_TRUE(d.cache) << "every rank of a cached run is given what rebuilds its cache";
                    auto kept = std::make_shared<StepCacheReplay>(*d.cache);
                    for (StepCacheReplay::Call& c : kept->calls) c.latents = c.latents.clone();
                    replays.push_back(kept);
                };
                const Tensor full = pipe.generate(cpu_backend(), full_req, {}, {}, {}, nullptr, mesh.groups());
                const std::vector<int> full_skipped = skipped;
                ASSERT_EQ(after.size(), size_t(req.params.num_inference_steps));
                bool replayed_a_skip = false;
                for (int stop = 1; stop < req.params.num_inference_steps; ++stop) {
                    GenerationRequest resumed = req;
                    resumed.start_step = stop;
                    resumed.initial_latents = after[size_t(stop - 1)];
                    resumed.cache_replay = replays[size_t(stop - 1)];
                    for (const StepCacheReplay::Call& c : resumed.cache_replay->calls) replayed_a_skip |= !c.compute;
                    skipped.clear();
                    const Tensor rest = pipe.generate(cpu_backend(), resumed, {}, {}, {}, nullptr, mesh.groups());
                    EXPECT_TRUE(bit_identical(rest, full))
                        << dir << " " << shape.str() << " " << kind << " after " << stop;
                    EXPECT_EQ(skipped, full_skipped) << dir << " " << shape.str() << " " << kind << " after " << stop;
                }
                if (std::string(kind) == "teacache:1e9") {
                    EXPECT_TRUE(replayed_a_skip);
                }
                say(*world, "  %s %s %s: resumed after each of %d steps, skipping %zu as uninterrupted\n",
                    dir.filename().c_str(), shape.str().c_str(), kind, req.params.num_inference_steps - 1,
                    full_skipped.size());
                ++checked;
            }
        }
    }
    if (checked == 0) GTEST_SKIP() << "no mesh of " << P << " ranks splits the pipeline fixtures";
}

// The VAE's tiles dealt to the ranks and blended on rank 0: the same frames as one rank's tiled decode, to
// the bit, through the temporal + spatial path and the spatial-only path.
TEST(Mpi, TiledVaeDecodeIsBitIdenticalToOneRank) {
    const auto world = MpiRuntime::world();
    const auto dirs = test::find_fixture_dirs(
        [](const fs::path& d) { return test::model_config_names(d, "_class_name", "AutoencoderKLHunyuanVideo"); });
    ASSERT_FALSE(dirs.empty()) << "no VAE fixture under " << test::fixtures_root();
    const HunyuanVideoVAE vae = HunyuanVideoVAE::load((dirs.front() / "model").string());
    VAETiling t = VAETiling::enabled();
    t.tile_sample_min_height = t.tile_sample_min_width = 16;  // tiles of 2 latents every latent
    t.tile_sample_stride_height = t.tile_sample_stride_width = 8;
    t.tile_sample_min_num_frames = 8;
    t.tile_sample_stride_num_frames = 4;
    const int64_t C = vae.config().latent_channels;
    for (int64_t T : {5, 1}) {  // 17 frames: temporal and spatial tiles; 1 frame: spatial tiles only
        const Tensor z = random_tensor({1, C, T, 5, 4}, 11 + uint64_t(T));
        std::vector<Tensor> one, split;
        auto into = [](std::vector<Tensor>& v) {
            return [&v](const Tensor& frames, int64_t) { v.push_back(frames.contiguous().clone()); };
        };
        vae.decode_streaming(cpu_backend(), z, t, into(one));
        vae.decode_streaming(cpu_backend(), z, t, into(split), nullptr, world.get());
        if (world->rank() != 0) {
            EXPECT_TRUE(split.empty()) << "only rank 0 gets frames";
            continue;
        }
        ASSERT_EQ(split.size(), one.size()) << T << " latent frames";
        for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(bit_identical(split[i], one[i])) << "chunk " << i;
        say(*world, "  %lld latent frames: %zu chunks bit-identical over %d ranks\n", (long long)T, one.size(),
            world->size());
    }
}
