// Weight blocks of the Llama and CLIP text encoders and of the VAE (the transformer's are tested with the
// residency manager in test_residency.cpp), on every model folder of each kind found under the fixtures
// (a config.json naming the architecture: the parity fixtures' model/ folders and the pipelines' text_encoder/,
// text_encoder_2/, vae/). For each model:
//  - the blocks cover every weight exactly once (parameter count, tensor count, distinct memory; on a
//    random-weight model of the same config, exactly the tensors the binder made), and their bytes add up;
//  - a forward through a provider that hands out deep copies is bit-identical to one on the weights as loaded,
//    acquires exactly blocks_used() in that order, and releases each block before the next is acquired;
//  - zeroing the copy of any one used block changes the output, so the model computes with what it is handed
//    (a model ignoring the provider would pass the bit-identity check).
// Inputs are made up (seeded): the checks compare runs of our own code, so no reference outputs are needed.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <set>

#include "backends/cpu/cpu_backend.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/hunyuan_video_transformer.h"
#include "models/hunyuan_video_vae.h"
#include "support/fixtures.h"
#include "text/clip_text_encoder.h"
#include "text/llama_text_encoder.h"

namespace fs = std::filesystem;
using namespace sr;

namespace {

// ---------------------------------------------------------------------------------------------------------
// Helpers

// Folders whose config.json says `key` = `name` (model folders themselves, not their parents).
std::vector<fs::path> model_dirs(const std::string& key, const std::string& name) {
    return test::find_fixture_dirs([&](const fs::path& d) {
        if (!fs::exists(d / "config.json")) return false;
        const Json j = load_json_file((d / "config.json").string());
        return j.contains(key) && j[key].is_string() && j[key].get<std::string>() == name;
    });
}
std::vector<fs::path> llama_dirs() {
    return model_dirs("model_type", "llama");
}
std::vector<fs::path> clip_dirs() {
    return model_dirs("model_type", "clip_text_model");
}
std::vector<fs::path> vae_dirs() {
    return model_dirs("_class_name", "AutoencoderKLHunyuanVideo");
}

// Same shape, dtype and bytes.
::testing::AssertionResult bit_identical(const Tensor& got, const Tensor& want) {
    if (!got.defined() || !want.defined()) return ::testing::AssertionFailure() << "undefined tensor";
    if (!(got.shape() == want.shape()) || got.dtype() != want.dtype())
        return ::testing::AssertionFailure() << got.describe() << " vs " << want.describe();
    const Tensor a = got.contiguous(), b = want.contiguous();
    if (std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) != 0)
        return ::testing::AssertionFailure() << got.describe() << " differs";
    return ::testing::AssertionSuccess();
}

// A provider owning deep copies of a model's blocks (fresh host memory, so the results cannot come from the
// loaded weights by accident), recording what is acquired and checking that each acquire is released before
// the next. `zeroed`: that block's copies are all zero bytes.
class CopyingProvider final : public BlockWeightProvider {
public:
    template <class Model>
    explicit CopyingProvider(const Model& model, std::optional<size_t> zeroed = std::nullopt) {
        for (size_t b = 0; b < model.weight_block_count(); ++b) {
            std::vector<Tensor> copies;
            for (const Tensor& t : model.weight_block_tensors(b)) {
                if (!t.defined()) {
                    copies.emplace_back();
                    continue;
                }
                Tensor c = t.clone();
                EXPECT_NE(c.raw_data(), t.raw_data());
                if (zeroed == b) std::memset(c.raw_data(), 0, c.nbytes());
                copies.push_back(std::move(c));
            }
            blocks_.push_back(std::move(copies));
        }
    }
    ~CopyingProvider() override { EXPECT_FALSE(held_.has_value()) << "block " << *held_ << " never released"; }

    const std::vector<Tensor>& acquire(size_t block) override {
        EXPECT_FALSE(held_.has_value()) << "block " << block << " acquired while block " << *held_ << " is held";
        EXPECT_LT(block, blocks_.size());
        held_ = block;
        acquired_.push_back(block);
        return blocks_.at(block);
    }
    void release(size_t block) override {
        EXPECT_EQ(held_, std::optional<size_t>(block)) << "release of block " << block << ", which is not held";
        held_.reset();
    }

    const std::vector<size_t>& acquired() const { return acquired_; }
    bool idle() const { return !held_.has_value(); }

private:
    std::vector<std::vector<Tensor>> blocks_;
    std::optional<size_t> held_;
    std::vector<size_t> acquired_;
};

// The structural checks every model's blocks must pass. `n_checkpoint_tensors`: the tensors the model binds.
template <class Model>
void check_block_structure(const Model& model, size_t n_checkpoint_tensors) {
    const std::vector<WeightBlock> blocks = model.weight_blocks();
    ASSERT_EQ(blocks.size(), model.weight_block_count());
    std::set<std::string> names;
    std::set<const void*> memory;
    int64_t parameters = 0;
    size_t n_defined = 0;
    for (size_t b = 0; b < blocks.size(); ++b) {
        SCOPED_TRACE(blocks[b].name);
        EXPECT_TRUE(names.insert(blocks[b].name).second) << "duplicate block name";
        size_t bytes = 0;
        for (const Tensor& t : model.weight_block_tensors(b)) {
            if (!t.defined()) continue;
            bytes += t.nbytes();
            parameters += t.numel();
            ++n_defined;
            EXPECT_TRUE(memory.insert(t.raw_data()).second) << t.describe() << " is listed twice";
        }
        EXPECT_EQ(blocks[b].bytes(), bytes);
        EXPECT_GT(bytes, 0u) << "an empty block";
    }
    EXPECT_EQ(parameters, model.parameter_count()) << "the blocks do not cover the weights exactly once";
    EXPECT_EQ(n_defined, n_checkpoint_tensors);
}

// On a model bound from WeightBinder::random: the blocks' tensors are exactly the ones the binder made.
template <class Model>
void check_blocks_are_the_bound_tensors(const Model& model, const WeightBinder& binder) {
    std::multiset<const void*> bound, listed;
    for (const auto& [name, t] : binder.generated()) bound.insert(t.raw_data());
    for (size_t b = 0; b < model.weight_block_count(); ++b)
        for (const Tensor& t : model.weight_block_tensors(b))
            if (t.defined()) listed.insert(t.raw_data());
    EXPECT_EQ(listed, bound);
}

// Tensors a checkpoint holds that the model ignores by design.
size_t checkpoint_tensor_count(const fs::path& dir, const std::set<std::string>& ignored) {
    const WeightStore store = WeightStore::open(dir.string());
    size_t n = 0;
    for (const std::string& name : store.names()) n += ignored.count(name) ? 0 : 1;
    return n;
}

std::vector<size_t> repeated(const std::vector<size_t>& v, int times) {
    std::vector<size_t> out;
    for (int i = 0; i < times; ++i) out.insert(out.end(), v.begin(), v.end());
    return out;
}

Tensor random_ids(int64_t B, int64_t L, int64_t vocab, uint64_t seed) {
    Tensor ids = Tensor::empty({B, L}, DType::I64);
    std::mt19937_64 rng(seed);
    for (int64_t i = 0; i < B * L; ++i) ids.data<int64_t>()[i] = int64_t(rng() % uint64_t(vocab));
    return ids;
}

Tensor random_f32(const Shape& s, uint64_t seed) {
    Tensor t = Tensor::empty(s, DType::F32);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
    return t;
}

}  // namespace

TEST(ModelBlocks, FixturesExist) {
    // Checks that find nothing to check must fail, not pass vacuously.
    EXPECT_FALSE(llama_dirs().empty()) << "no Llama model under " << test::fixtures_root();
    EXPECT_FALSE(clip_dirs().empty()) << "no CLIP model under " << test::fixtures_root();
    EXPECT_FALSE(vae_dirs().empty()) << "no VAE under " << test::fixtures_root();
}

// ---------------------------------------------------------------------------------------------------------
// Declarations: the names a model declares (nn/weight_visitor.h), block by block, are exactly the checkpoint's
// tensors (less the ones the model ignores by design), each once, each with the checkpoint's shape.

template <class Model>
void check_declared_names(const Model& model, const fs::path& dir, const std::set<std::string>& ignored) {
    const WeightStore store = WeightStore::open(dir.string());
    std::set<std::string> declared;
    for (size_t b = 0; b < model.weight_block_count(); ++b) {
        const WeightBlock block = model.weight_block(b);
        SCOPED_TRACE(block.name);
        ASSERT_EQ(block.tensor_names.size(), block.tensors.size());
        for (size_t i = 0; i < block.tensors.size(); ++i) {
            const std::string& name = block.tensor_names[i];
            EXPECT_TRUE(declared.insert(name).second) << name << " is declared twice";
            ASSERT_TRUE(store.contains(name)) << name << " is declared but not in the checkpoint";
            EXPECT_EQ(block.tensors[i].shape(), store.get(name).shape()) << name;
        }
    }
    for (const std::string& name : store.names()) {
        if (!ignored.count(name)) {
            EXPECT_TRUE(declared.count(name)) << name << " is in the checkpoint, not declared";
        }
    }
}

TEST(ModelBlocks, DeclarationsNameEveryCheckpointTensorOnce) {
    const auto transformers = model_dirs("_class_name", "HunyuanVideoTransformer3DModel");
    EXPECT_FALSE(transformers.empty()) << "no transformer under " << test::fixtures_root();
    for (const fs::path& dir : transformers) {
        SCOPED_TRACE(dir.string());
        check_declared_names(HunyuanVideoTransformer::load(dir.string()), dir, {});
    }
    for (const fs::path& dir : vae_dirs()) {
        SCOPED_TRACE(dir.string());
        check_declared_names(HunyuanVideoVAE::load(dir.string()), dir, {});
    }
    for (const fs::path& dir : llama_dirs()) {
        SCOPED_TRACE(dir.string());
        check_declared_names(LlamaTextEncoder::load(dir.string()), dir, {"lm_head.weight"});
    }
    for (const fs::path& dir : clip_dirs()) {
        SCOPED_TRACE(dir.string());
        check_declared_names(ClipTextEncoder::load(dir.string()), dir, {"text_model.embeddings.position_ids"});
    }
}

// ---------------------------------------------------------------------------------------------------------
// Llama

TEST(ModelBlocks, LlamaBlocksCoverEveryWeightOnce) {
    for (const fs::path& dir : llama_dirs()) {
        SCOPED_TRACE(dir.string());
        const LlamaTextEncoder enc = LlamaTextEncoder::load(dir.string());
        const size_t n = size_t(enc.config().num_hidden_layers);
        ASSERT_EQ(enc.weight_block_count(), n + 2);
        const auto blocks = enc.weight_blocks();
        EXPECT_EQ(blocks.front().name, "llama.embeddings");
        EXPECT_EQ(blocks[1].name, "llama.layers.0");
        EXPECT_EQ(blocks.back().name, "llama.final_norm");
        check_block_structure(enc, checkpoint_tensor_count(dir, {"lm_head.weight"}));

        const LlamaConfig config = LlamaConfig::from_json(load_json_file((dir / "config.json").string()), dir.string());
        WeightBinder binder = WeightBinder::random(3, DType::BF16);
        const LlamaTextEncoder random(config, binder);
        check_blocks_are_the_bound_tensors(random, binder);
    }
}

TEST(ModelBlocks, LlamaBlocksUsedFollowTheHiddenStateIndex) {
    for (const fs::path& dir : llama_dirs()) {
        SCOPED_TRACE(dir.string());
        const LlamaTextEncoder enc = LlamaTextEncoder::load(dir.string());
        const int n = int(enc.config().num_hidden_layers);
        for (int k = 0; k <= n; ++k) {
            std::vector<size_t> want;
            for (int b = 0; b <= k; ++b) want.push_back(size_t(b));
            if (k == n) want.push_back(size_t(n + 1));
            EXPECT_EQ(enc.blocks_used(k), want) << "index " << k;
            EXPECT_EQ(enc.blocks_used(k - n - 1), want) << "index " << k - n - 1;
        }
        EXPECT_THROW(enc.blocks_used(n + 1), InputError);
        EXPECT_THROW(enc.blocks_used(-n - 2), InputError);
    }
}

TEST(ModelBlocks, LlamaProviderIsBitIdenticalAndAcquiresBlocksUsed) {
    CpuBackend& be = cpu_backend();
    for (const fs::path& dir : llama_dirs()) {
        SCOPED_TRACE(dir.string());
        const LlamaTextEncoder enc = LlamaTextEncoder::load(dir.string());
        const int n = int(enc.config().num_hidden_layers);
        const Tensor ids = random_ids(2, 12, enc.config().vocab_size, 1);
        Tensor mask = Tensor::empty({2, 12}, DType::I64);
        for (int64_t i = 0; i < 24; ++i) mask.data<int64_t>()[i] = i < 12 + 8 ? 1 : 0;  // row 1 right-padded
        for (int index = -n - 1; index <= n; ++index) {
            SCOPED_TRACE("hidden_state_index " + std::to_string(index));
            const Tensor want = enc.forward(be, ids, mask, index);
            CopyingProvider provider(enc);
            // Twice through the same provider: blocks come again in the same order (cyclic use).
            for (int call = 0; call < 2; ++call)
                EXPECT_TRUE(bit_identical(enc.forward(be, ids, mask, index, {}, &provider), want));
            EXPECT_EQ(provider.acquired(), repeated(enc.blocks_used(index), 2));
            EXPECT_TRUE(provider.idle());
        }
        // An input error throws before anything is acquired.
        CopyingProvider provider(enc);
        EXPECT_THROW(enc.forward(be, ids, mask.slice(1, 0, 5), -1, {}, &provider), InputError);
        EXPECT_TRUE(provider.acquired().empty());
    }
}

TEST(ModelBlocks, LlamaComputesWithTheBlocksItIsHanded) {
    CpuBackend& be = cpu_backend();
    for (const fs::path& dir : llama_dirs()) {
        SCOPED_TRACE(dir.string());
        const LlamaTextEncoder enc = LlamaTextEncoder::load(dir.string());
        const Tensor ids = random_ids(1, 9, enc.config().vocab_size, 2);
        const Tensor want = enc.forward(be, ids, Tensor(), -1);
        for (size_t b : enc.blocks_used(-1)) {
            CopyingProvider zeroed(enc, b);
            EXPECT_FALSE(bit_identical(enc.forward(be, ids, Tensor(), -1, {}, &zeroed), want))
                << "block " << b << " zeroed, same output";
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// CLIP

TEST(ModelBlocks, ClipBlocksCoverEveryWeightOnce) {
    for (const fs::path& dir : clip_dirs()) {
        SCOPED_TRACE(dir.string());
        const ClipTextEncoder enc = ClipTextEncoder::load(dir.string());
        const size_t n = size_t(enc.config().num_hidden_layers);
        ASSERT_EQ(enc.weight_block_count(), n + 2);
        const auto blocks = enc.weight_blocks();
        EXPECT_EQ(blocks.front().name, "clip.embeddings");
        EXPECT_EQ(blocks[1].name, "clip.layers.0");
        EXPECT_EQ(blocks.back().name, "clip.final_layer_norm");
        check_block_structure(enc, checkpoint_tensor_count(dir, {"text_model.embeddings.position_ids"}));
        std::vector<size_t> all(n + 2);
        for (size_t i = 0; i < all.size(); ++i) all[i] = i;
        EXPECT_EQ(enc.blocks_used(), all);

        const ClipTextConfig config =
            ClipTextConfig::from_json(load_json_file((dir / "config.json").string()), dir.string());
        WeightBinder binder = WeightBinder::random(4, DType::BF16);
        const ClipTextEncoder random(config, binder);
        check_blocks_are_the_bound_tensors(random, binder);
    }
}

TEST(ModelBlocks, ClipProviderIsBitIdenticalAndAcquiresBlocksUsed) {
    CpuBackend& be = cpu_backend();
    for (const fs::path& dir : clip_dirs()) {
        SCOPED_TRACE(dir.string());
        const ClipTextEncoder enc = ClipTextEncoder::load(dir.string());
        const int64_t L = std::min<int64_t>(enc.config().max_position_embeddings, 16);
        const Tensor ids = random_ids(2, L, enc.config().vocab_size, 5);
        const ClipTextOutput want = enc.forward(be, ids);
        CopyingProvider provider(enc);
        for (int call = 0; call < 2; ++call) {
            const ClipTextOutput got = enc.forward(be, ids, {}, &provider);
            EXPECT_TRUE(bit_identical(got.last_hidden_state, want.last_hidden_state));
            EXPECT_TRUE(bit_identical(got.pooler_output, want.pooler_output));
            EXPECT_EQ(got.pooled_positions, want.pooled_positions);
        }
        EXPECT_EQ(provider.acquired(), repeated(enc.blocks_used(), 2));
        EXPECT_TRUE(provider.idle());

        for (size_t b : enc.blocks_used()) {
            CopyingProvider zeroed(enc, b);
            EXPECT_FALSE(bit_identical(enc.forward(be, ids, {}, &zeroed).last_hidden_state, want.last_hidden_state))
                << "block " << b << " zeroed, same output";
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// VAE

namespace {

// Small tiles (the VAE fixture's enable_tiling kwargs), so that small inputs take every tiled path.
VAETiling small_tiles() {
    VAETiling t = VAETiling::enabled();
    t.tile_sample_min_height = t.tile_sample_min_width = 64;
    t.tile_sample_stride_height = t.tile_sample_stride_width = 48;
    t.tile_sample_min_num_frames = 8;
    t.tile_sample_stride_num_frames = 4;
    return t;
}

struct VAECase {
    std::string name;
    VAETiling tiling;
    Shape shape;  // x for encodes, z for decodes
};

// Encode and decode cases covering the untiled, spatially tiled and temporally tiled paths.
std::vector<VAECase> encode_cases(const HunyuanVideoVAEConfig& c) {
    const int64_t r = c.spatial_compression_ratio, C = c.in_channels;
    return {{"untiled", VAETiling{}, {1, C, 5, 4 * r, 6 * r}},
            {"tiled spatial", small_tiles(), {1, C, 1, 10 * r, 14 * r}},
            {"tiled temporal", small_tiles(), {1, C, 13, 4 * r, 4 * r}}};
}
std::vector<VAECase> decode_cases(const HunyuanVideoVAEConfig& c) {
    const int64_t C = c.latent_channels;
    return {{"untiled", VAETiling{}, {1, C, 3, 4, 6}},
            {"tiled spatial", small_tiles(), {1, C, 2, 10, 14}},
            {"tiled temporal", small_tiles(), {1, C, 5, 4, 6}}};
}

}  // namespace

TEST(ModelBlocks, VAEBlocksCoverEveryWeightOnce) {
    for (const fs::path& dir : vae_dirs()) {
        SCOPED_TRACE(dir.string());
        const HunyuanVideoVAE vae = HunyuanVideoVAE::load(dir.string());
        ASSERT_EQ(vae.weight_block_count(), 2u);
        const auto blocks = vae.weight_blocks();
        EXPECT_EQ(blocks[HunyuanVideoVAE::kEncoderBlock].name, "vae.encoder");
        EXPECT_EQ(blocks[HunyuanVideoVAE::kDecoderBlock].name, "vae.decoder");
        check_block_structure(vae, checkpoint_tensor_count(dir, {}));
        EXPECT_EQ(HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Encode),
                  std::vector<size_t>{HunyuanVideoVAE::kEncoderBlock});
        EXPECT_EQ(HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Decode),
                  std::vector<size_t>{HunyuanVideoVAE::kDecoderBlock});

        WeightBinder binder = WeightBinder::random(6, DType::F32);
        const HunyuanVideoVAE random(vae.config(), binder);
        check_blocks_are_the_bound_tensors(random, binder);
    }
}

TEST(ModelBlocks, VAEEncodeProviderIsBitIdenticalAndAcquiresOnce) {
    CpuBackend& be = cpu_backend();
    for (const fs::path& dir : vae_dirs()) {
        const HunyuanVideoVAE vae = HunyuanVideoVAE::load(dir.string());
        const std::vector<size_t> used = HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Encode);
        for (const VAECase& c : encode_cases(vae.config())) {
            SCOPED_TRACE(dir.string() + ": encode " + c.name);
            const Tensor x = random_f32(c.shape, 7);
            const int64_t calls_before = vae.encoder_calls();
            const LatentDistribution want = vae.encode(be, x, c.tiling);
            const int64_t calls = vae.encoder_calls() - calls_before;
            EXPECT_EQ(calls == 1, c.name == "untiled") << calls << " encoder/decoder runs";

            CopyingProvider provider(vae);
            const LatentDistribution got = vae.encode(be, x, c.tiling, {}, &provider);
            EXPECT_TRUE(bit_identical(got.moments, want.moments));
            EXPECT_EQ(provider.acquired(), used) << "one acquire for all " << calls << " tiles";
            EXPECT_TRUE(provider.idle());

            if (c.name == "untiled") {  // the tiled paths run the same rebound encoder
                CopyingProvider zeroed(vae, HunyuanVideoVAE::kEncoderBlock);
                EXPECT_FALSE(bit_identical(vae.encode(be, x, c.tiling, {}, &zeroed).moments, want.moments));
            }
        }
        SCOPED_TRACE(dir.string() + ": encode_untiled");
        const Tensor x = random_f32(encode_cases(vae.config())[0].shape, 8);
        CopyingProvider provider(vae);
        EXPECT_TRUE(bit_identical(vae.encode_untiled(be, x, {}, &provider), vae.encode_untiled(be, x)));
        EXPECT_EQ(provider.acquired(), used);
    }
}

TEST(ModelBlocks, VAEDecodeProviderIsBitIdenticalAndAcquiresOnce) {
    CpuBackend& be = cpu_backend();
    for (const fs::path& dir : vae_dirs()) {
        const HunyuanVideoVAE vae = HunyuanVideoVAE::load(dir.string());
        const std::vector<size_t> used = HunyuanVideoVAE::blocks_used(HunyuanVideoVAE::Pass::Decode);
        for (const VAECase& c : decode_cases(vae.config())) {
            SCOPED_TRACE(dir.string() + ": decode " + c.name);
            const Tensor z = random_f32(c.shape, 9);
            const int64_t calls_before = vae.decoder_calls();
            const Tensor want = vae.decode(be, z, c.tiling);
            const int64_t calls = vae.decoder_calls() - calls_before;
            EXPECT_EQ(calls == 1, c.name == "untiled") << calls << " encoder/decoder runs";

            CopyingProvider provider(vae);
            EXPECT_TRUE(bit_identical(vae.decode(be, z, c.tiling, {}, &provider), want));
            EXPECT_EQ(provider.acquired(), used) << "one acquire for all " << calls << " tiles";

            // Streaming: the same frames, the block held until the last one is handed over.
            CopyingProvider streaming(vae);
            Tensor frames = Tensor::zeros(want.shape(), DType::F32);
            vae.decode_streaming(
                be, z, c.tiling,
                [&](const Tensor& f, int64_t first) {
                    EXPECT_FALSE(streaming.idle()) << "frames handed over after the block was released";
                    Tensor dst = frames.slice(2, first, first + f.dim(2));
                    dst.copy_from(f);
                },
                &streaming);
            EXPECT_TRUE(bit_identical(frames, want));
            EXPECT_EQ(streaming.acquired(), used);
            EXPECT_TRUE(streaming.idle());

            if (c.name == "untiled") {  // the tiled paths run the same rebound decoder
                CopyingProvider zeroed(vae, HunyuanVideoVAE::kDecoderBlock);
                EXPECT_FALSE(bit_identical(vae.decode(be, z, c.tiling, {}, &zeroed), want));
            }
        }
        SCOPED_TRACE(dir.string() + ": decode_untiled");
        const Tensor z = random_f32(decode_cases(vae.config())[0].shape, 10);
        CopyingProvider provider(vae);
        EXPECT_TRUE(bit_identical(vae.decode_untiled(be, z, {}, &provider), vae.decode_untiled(be, z)));
        EXPECT_EQ(provider.acquired(), used);
    }
}

// A sink that throws (a full disk while writing the video) still releases the block.
TEST(ModelBlocks, VAEReleasesTheBlockWhenTheSinkThrows) {
    const auto dirs = vae_dirs();
    ASSERT_FALSE(dirs.empty());
    const HunyuanVideoVAE vae = HunyuanVideoVAE::load(dirs.front().string());
    const VAECase c = decode_cases(vae.config())[2];
    CopyingProvider provider(vae);
    EXPECT_THROW(vae.decode_streaming(
                     cpu_backend(), random_f32(c.shape, 11), c.tiling,
                     [](const Tensor&, int64_t) { throw InputError("disk full"); }, &provider),
                 InputError);
    EXPECT_TRUE(provider.idle());
    EXPECT_EQ(provider.acquired(), std::vector<size_t>{HunyuanVideoVAE::kDecoderBlock});
}
