// Tensor views and copies on 5-D and 6-D shapes: every view is checked element by element against index
// arithmetic done here, independently of the strides the tensor computes, so a wrong stride or offset shows
// up as a wrong value, not only as a wrong shape.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "core/tensor.h"

namespace {

using sr::DType;
using sr::Shape;
using sr::Tensor;
using Index = std::vector<int64_t>;

// f32 tensor whose element at row-major flat index i holds float(i): a value names its own position.
Tensor iota(const Shape& shape) {
    std::vector<float> v(size_t(shape.numel()));
    std::iota(v.begin(), v.end(), 0.0f);
    return Tensor::from_vector(v, shape);
}

int64_t flat_index(const Index& idx, const Index& dims) {
    int64_t f = 0;
    for (size_t i = 0; i < dims.size(); ++i) f = f * dims[i] + idx[i];
    return f;
}

// Calls fn(idx) for every index of `dims` in row-major order.
template <class Fn>
void for_each_index(const Index& dims, Fn fn) {
    for (int64_t d : dims)
        if (d == 0) return;
    Index idx(dims.size(), 0);
    while (true) {
        fn(idx);
        int i = int(dims.size()) - 1;
        while (i >= 0 && ++idx[size_t(i)] == dims[size_t(i)]) idx[size_t(i--)] = 0;
        if (i < 0) return;
    }
}

// Element at a multi-index, read through the tensor's own strides (not item_as_float's flat decomposition,
// so the two readings check each other).
float at(const Tensor& t, const Index& idx) {
    int64_t off = 0;
    for (int i = 0; i < t.rank(); ++i) off += idx[size_t(i)] * t.stride(i);
    EXPECT_EQ(t.dtype(), DType::F32);
    return static_cast<const float*>(t.raw_data())[off];
}

// Checks that `t` (shape `dims`) holds, at every index, `expected(index)`, both through item_as_float and
// through at(); and that contiguous() yields the same values packed in row-major order.
template <class Fn>
void expect_elements(const Tensor& t, const Index& dims, Fn expected) {
    ASSERT_EQ(t.shape().to_vector(), dims);
    const Tensor c = t.contiguous();
    ASSERT_TRUE(c.is_contiguous());
    ASSERT_EQ(c.shape().to_vector(), dims);
    const float* packed = c.data<float>();
    int64_t mismatches = 0;
    for_each_index(dims, [&](const Index& idx) {
        const float want = float(expected(idx));
        const int64_t f = flat_index(idx, dims);
        if (t.item_as_float(f) != want || at(t, idx) != want || packed[f] != want) {
            if (++mismatches <= 5)
                ADD_FAILURE() << "at flat " << f << ": item " << t.item_as_float(f) << ", strided " << at(t, idx)
                              << ", packed " << packed[f] << ", want " << want;
        }
    });
    EXPECT_EQ(mismatches, 0);
}

TEST(Shape, NumelStrAndEquality) {
    const Shape s{2, 16, 3, 8, 12};
    EXPECT_EQ(s.rank(), 5);
    EXPECT_EQ(s.numel(), 2 * 16 * 3 * 8 * 12);
    EXPECT_EQ(s.str(), "[2,16,3,8,12]");
    EXPECT_EQ(Shape{}.numel(), 1);  // a scalar holds one element
    EXPECT_EQ(Shape{}.str(), "[]");
    EXPECT_EQ((Shape{4, 0, 3}.numel()), 0);
    EXPECT_TRUE((s == Shape{2, 16, 3, 8, 12}));
    EXPECT_FALSE((s == Shape{2, 16, 3, 8}));
    EXPECT_FALSE((s == Shape{2, 16, 3, 8, 13}));
}

TEST(Shape, RankAboveMaxFromUserDataIsInputError) {
    // Shapes from a file arrive as vectors; a rank above kMaxDims must be a reportable error.
    const std::vector<int64_t> nine(9, 1);
    try {
        Shape s(nine);
        FAIL() << "rank 9 accepted";
    } catch (const sr::InputError& e) {
        EXPECT_NE(std::string(e.what()).find("rank 9"), std::string::npos) << e.what();
    }
    EXPECT_EQ(Shape(std::vector<int64_t>(8, 2)).numel(), 256);
}

TEST(Tensor, EmptyHasContiguousStridesAndDescribe) {
    const Tensor t = Tensor::empty({2, 16, 3, 8, 12}, DType::BF16);
    EXPECT_TRUE(t.defined());
    EXPECT_EQ(t.rank(), 5);
    EXPECT_EQ(t.nbytes(), size_t(2 * 16 * 3 * 8 * 12 * 2));
    const int64_t want[] = {16 * 3 * 8 * 12, 3 * 8 * 12, 8 * 12, 12, 1};
    for (int i = 0; i < 5; ++i) EXPECT_EQ(t.stride(i), want[i]) << "dim " << i;
    EXPECT_EQ(t.dim(-1), 12);
    EXPECT_EQ(t.stride(-2), 12);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.describe(), "bf16[2,16,3,8,12]");
    EXPECT_EQ(t.device(), sr::Device::cpu());
    EXPECT_FALSE(Tensor().defined());
}

TEST(Tensor, EmptyRejectsNegativeDimension) {
    EXPECT_THROW(Tensor::empty({2, -3, 4}, DType::F32), sr::InputError);
}

TEST(Tensor, ZerosAndFromVector) {
    const Tensor z = Tensor::zeros({3, 5}, DType::F16);
    for (int64_t i = 0; i < z.numel(); ++i) EXPECT_EQ(z.item_as_float(i), 0.0f);
    const Tensor v = Tensor::from_vector({1.5f, -2.0f, 3.25f}, {3});
    EXPECT_EQ(v.dtype(), DType::F32);
    EXPECT_EQ(v.item_as_float(2), 3.25f);
}

TEST(TensorView, Permute5DMovesChannelsLast) {
    const Index dims = {2, 3, 4, 5, 6};  // [B,C,F,H,W]
    const Tensor x = iota(Shape(dims));
    const Tensor p = x.permute({0, 2, 3, 4, 1});  // [B,F,H,W,C]
    EXPECT_FALSE(p.is_contiguous());
    EXPECT_EQ(p.raw_data(), x.raw_data());  // a view, no copy
    EXPECT_EQ(p.stride(4), 4 * 5 * 6);      // C keeps its stride
    expect_elements(p, {2, 4, 5, 6, 3}, [&](const Index& i) {
        return flat_index({i[0], i[4], i[1], i[2], i[3]}, dims);
    });
    // A permuted copy owns new memory: writing it must not touch the source.
    Tensor c = p.contiguous();
    EXPECT_NE(c.raw_data(), x.raw_data());
    c.data<float>()[0] = 1000.0f;
    EXPECT_EQ(x.item_as_float(0), 0.0f);
}

TEST(TensorView, PermuteNegativeDimsAndInverse) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    // (0,2,3,4,1) followed by its inverse (0,4,1,2,3) is the identity.
    const Tensor back = x.permute({0, -3, -2, -1, 1}).permute({0, 4, 1, 2, 3});
    EXPECT_TRUE(back.is_contiguous());
    expect_elements(back, dims, [&](const Index& i) { return flat_index(i, dims); });
}

TEST(TensorView, Permute6DReversesAllDims) {
    const Index dims = {2, 3, 2, 4, 3, 5};
    const Tensor x = iota(Shape(dims));
    const Tensor p = x.permute({5, 4, 3, 2, 1, 0});
    expect_elements(p, {5, 3, 4, 2, 3, 2}, [&](const Index& i) {
        return flat_index({i[5], i[4], i[3], i[2], i[1], i[0]}, dims);
    });
}

TEST(TensorView, SliceSharesStorageAndOffsets) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    const Tensor s = x.slice(2, 1, 3);  // frames 1..2
    EXPECT_FALSE(s.is_contiguous());
    // The view starts at element (0,0,1,0,0): 1 * 5 * 6 floats in.
    EXPECT_EQ(static_cast<const char*>(s.raw_data()) - static_cast<const char*>(x.raw_data()), 30 * 4);
    expect_elements(s, {2, 3, 2, 5, 6}, [&](const Index& i) {
        return flat_index({i[0], i[1], i[2] + 1, i[3], i[4]}, dims);
    });
    // Slicing the outermost dim keeps the view contiguous, so contiguous() must not copy.
    const Tensor outer = x.slice(0, 1, 2);
    EXPECT_TRUE(outer.is_contiguous());
    EXPECT_EQ(outer.contiguous().raw_data(), outer.raw_data());
}

TEST(TensorView, SliceOfSliceAndNegativeDim) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    const Tensor s = x.slice(-1, 2, 6).slice(-1, 1, 3).slice(1, 1, 3);  // W 3..4, C 1..2
    expect_elements(s, {2, 2, 4, 5, 2}, [&](const Index& i) {
        return flat_index({i[0], i[1] + 1, i[2], i[3], i[4] + 3}, dims);
    });
}

TEST(TensorView, EmptySliceHasNoElements) {
    const Tensor x = iota({2, 3, 4, 5, 6});
    const Tensor e = x.slice(3, 2, 2);
    EXPECT_EQ(e.numel(), 0);
    EXPECT_EQ(e.nbytes(), 0u);
    const Tensor c = e.contiguous();  // must not read or write any element
    EXPECT_EQ(c.shape().to_vector(), (Index{2, 3, 4, 0, 6}));
}

TEST(TensorView, SelectDropsTheDimension) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    const Tensor frame = x.select(2, 3);  // [B,C,H,W] of frame 3
    EXPECT_EQ(frame.rank(), 4);
    expect_elements(frame, {2, 3, 5, 6}, [&](const Index& i) { return flat_index({i[0], i[1], 3, i[2], i[3]}, dims); });
    const Tensor last = x.select(-1, 5);  // the last column
    expect_elements(last, {2, 3, 4, 5}, [&](const Index& i) { return flat_index({i[0], i[1], i[2], i[3], 5}, dims); });
}

TEST(TensorView, Select6DDownToScalar) {
    const Index dims = {2, 3, 2, 4, 3, 5};
    const Tensor x = iota(Shape(dims));
    Tensor t = x;
    const Index pick = {1, 2, 1, 3, 2, 4};
    for (size_t k = 0; k < pick.size(); ++k) t = t.select(0, pick[k]);
    EXPECT_EQ(t.rank(), 0);
    EXPECT_EQ(t.numel(), 1);
    EXPECT_EQ(t.item_as_float(0), float(flat_index(pick, dims)));
}

TEST(TensorView, UnsqueezeTo6DAndBack) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    for (int d : {0, 2, 5, -1, -6}) {
        const Tensor u = x.unsqueeze(d);
        ASSERT_EQ(u.rank(), 6) << "unsqueeze " << d;
        const int nd = d < 0 ? d + 6 : d;
        EXPECT_EQ(u.dim(nd), 1);
        EXPECT_TRUE(u.is_contiguous()) << "unsqueeze " << d;
        Index udims = dims;
        udims.insert(udims.begin() + nd, 1);
        expect_elements(u, udims, [&](const Index& i) {
            Index orig = i;
            orig.erase(orig.begin() + nd);
            return flat_index(orig, dims);
        });
        EXPECT_EQ(u.select(nd, 0).shape().to_vector(), dims);
    }
    // Unsqueezing a permuted (non-contiguous) view keeps its element order.
    const Tensor pu = x.permute({4, 3, 2, 1, 0}).unsqueeze(2);
    expect_elements(pu, {6, 5, 1, 4, 3, 2}, [&](const Index& i) {
        return flat_index({i[5], i[4], i[3], i[1], i[0]}, dims);
    });
}

TEST(TensorView, ViewReshapesAndSharesStorage) {
    const Index dims = {2, 3, 4, 5, 6};
    Tensor x = iota(Shape(dims));
    const Tensor v = x.view({2, 3, -1, 6});  // fold F and H: -1 is inferred as 20
    EXPECT_EQ(v.shape().to_vector(), (Index{2, 3, 20, 6}));
    EXPECT_EQ(v.raw_data(), x.raw_data());
    for (int64_t i = 0; i < v.numel(); i += 37) EXPECT_EQ(v.item_as_float(i), float(i));
    // Six dims, splitting W: the same memory in a different shape.
    const Tensor v6 = x.view({2, 3, 4, 5, 2, 3});
    expect_elements(v6, {2, 3, 4, 5, 2, 3}, [&](const Index& i) {
        return flat_index({i[0], i[1], i[2], i[3], i[4] * 3 + i[5]}, dims);
    });
    // Writes through a view are seen by the original.
    Tensor w = x.view({-1});
    w.data<float>()[719] = -1.0f;
    EXPECT_EQ(x.item_as_float(719), -1.0f);
}

TEST(TensorView, ViewAfterContiguousOfPermute) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    // The tokens layout of the transformer: [B,C,F,H,W] -> [B,F*H*W,C].
    const Tensor tokens = x.permute({0, 2, 3, 4, 1}).contiguous().view({2, -1, 3});
    expect_elements(tokens, {2, 120, 3}, [&](const Index& i) {
        const int64_t f = i[1] / 30, h = (i[1] / 6) % 5, w = i[1] % 6;
        return flat_index({i[0], i[2], f, h, w}, dims);
    });
}

TEST(TensorView, ContiguousOfSizeOneDimsIgnoresTheirStride) {
    // A size-1 dim's stride is irrelevant to the layout; is_contiguous must not demand a particular value.
    const Tensor x = iota({4, 1, 6});
    const Tensor p = x.permute({1, 0, 2});  // [1,4,6] with stride 6 on the size-1 dim
    EXPECT_TRUE(p.is_contiguous());
    EXPECT_EQ(p.contiguous().raw_data(), x.raw_data());
}

TEST(TensorView, ViewOfNonContiguousIsAnInvariantFailure) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const Tensor x = iota({2, 3, 4});
    EXPECT_DEATH(x.permute({2, 1, 0}).view({24}), "view\\(\\) of non-contiguous");
}

TEST(TensorCopy, CopyFromStridedWithDtypeConversion) {
    const Index dims = {2, 3, 4, 5, 6};
    const Tensor x = iota(Shape(dims));
    const Tensor p = x.permute({0, 2, 3, 4, 1});  // strided source
    for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
        Tensor dst = Tensor::empty({2, 4, 5, 6, 3}, dt);
        dst.copy_from(p);
        // Integers up to 256 are exact in bf16 and up to 2048 in f16, so only values above that may round;
        // compare against the scalar converters, which test_dtype pins to known bit patterns.
        int64_t bad = 0;
        for_each_index({2, 4, 5, 6, 3}, [&](const Index& i) {
            const float v = float(flat_index({i[0], i[4], i[1], i[2], i[3]}, dims));
            const float want = dt == DType::BF16  ? sr::bf16_to_f32(sr::f32_to_bf16(v))
                               : dt == DType::F16 ? sr::f16_to_f32(sr::f32_to_f16(v))
                                                  : v;
            if (dst.item_as_float(flat_index(i, {2, 4, 5, 6, 3})) != want) ++bad;
        });
        EXPECT_EQ(bad, 0) << sr::dtype_name(dt);
    }
}

TEST(TensorCopy, CopyFromIntoStridedDestination) {
    // Writing into a view (here every other column of a wider tensor) must leave the gaps untouched.
    Tensor wide = Tensor::zeros({2, 3, 4, 5, 12}, DType::F32);
    const Tensor src = iota({2, 3, 4, 5, 6}).to(DType::BF16);
    Tensor left = wide.slice(4, 0, 6);
    left.copy_from(src);
    int64_t bad = 0;
    for_each_index({2, 3, 4, 5, 12}, [&](const Index& i) {
        const float want = i[4] < 6 ? float(flat_index({i[0], i[1], i[2], i[3], i[4]}, {2, 3, 4, 5, 6})) : 0.0f;
        const float rounded = sr::bf16_to_f32(sr::f32_to_bf16(want));
        if (at(wide, i) != rounded) ++bad;
    });
    EXPECT_EQ(bad, 0);
}

TEST(TensorCopy, ToBf16AndBackMatchesScalarRounding) {
    // Values chosen to exercise rounding: halfway cases round to even.
    const std::vector<float> v = {1.0f, sr::bits_to_f32(0x3f808000u), sr::bits_to_f32(0x3f818000u), -0.0f, 3.0e38f};
    const Tensor x = Tensor::from_vector(v, {5});
    const Tensor b = x.to(DType::BF16);
    ASSERT_EQ(b.dtype(), DType::BF16);
    const uint16_t* bits = b.data<uint16_t>();
    EXPECT_EQ(bits[0], 0x3f80);
    EXPECT_EQ(bits[1], 0x3f80);  // tie -> even mantissa
    EXPECT_EQ(bits[2], 0x3f82);  // tie -> even mantissa (up)
    EXPECT_EQ(bits[3], 0x8000);
    EXPECT_EQ(bits[4], sr::f32_to_bf16(3.0e38f));
    const Tensor back = b.to(DType::F32);
    EXPECT_EQ(back.item_as_float(0), 1.0f);
    EXPECT_EQ(back.item_as_float(2), sr::bf16_to_f32(0x3f82));
    EXPECT_TRUE(std::signbit(back.item_as_float(3)));
}

TEST(TensorCopy, IntegerAndBoolCopiesAreBitExact) {
    Tensor a = Tensor::empty({3, 4}, DType::I64);
    for (int64_t i = 0; i < 12; ++i) a.data<int64_t>()[i] = (int64_t(1) << 40) + i;
    const Tensor t = a.permute({1, 0}).contiguous();
    ASSERT_EQ(t.dtype(), DType::I64);
    for (int64_t r = 0; r < 4; ++r)
        for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(t.data<int64_t>()[r * 3 + c], (int64_t(1) << 40) + c * 4 + r);
    Tensor m = Tensor::zeros({2, 2}, DType::Bool);
    m.data<uint8_t>()[3] = 1;
    EXPECT_EQ(m.clone().item_as_float(3), 1.0f);
    EXPECT_EQ(m.clone().item_as_float(0), 0.0f);
}

TEST(TensorCopy, CloneGoesToTheGivenAllocatorAndReturnsMemory) {
    sr::HostAllocator arena("test-arena", 0);
    const Tensor x = iota({2, 3, 4, 5, 6});
    {
        const Tensor c = x.permute({4, 3, 2, 1, 0}).clone(arena);
        EXPECT_EQ(arena.in_use_bytes(), c.nbytes());
        EXPECT_EQ(c.item_as_float(1), float(flat_index({1, 0, 0, 0, 0}, {2, 3, 4, 5, 6})));
        const Tensor alias = c.slice(0, 1, 3);  // a view keeps the storage alive
        (void)alias;
    }
    EXPECT_EQ(arena.in_use_bytes(), 0u);
    EXPECT_EQ(arena.peak_bytes(), size_t(720 * 4));
}

TEST(Tensor, WrapHoldsTheKeepaliveAsLongAsAnyView) {
    auto backing = std::make_shared<std::vector<float>>(24, 2.5f);
    std::weak_ptr<std::vector<float>> watch = backing;
    Tensor view;
    {
        const Tensor w = Tensor::wrap(backing->data(), {2, 3, 4}, DType::F32, sr::Device::cpu(), backing);
        backing.reset();
        view = w.select(0, 1);
    }
    EXPECT_FALSE(watch.expired()) << "the wrapped memory was released while a view still exists";
    EXPECT_EQ(view.item_as_float(11), 2.5f);
    view = Tensor();
    EXPECT_TRUE(watch.expired()) << "the keepalive leaked";
}

}  // namespace
