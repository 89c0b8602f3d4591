#include "server/worker/train/blocked_ops.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "server/worker/train/bn_silu_kernel.h"
#include "server/worker/train/recompute.h"

#ifdef YOLO_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

// at::parallel_for splits the channels over threads only where this file is compiled with
// OpenMP (CMakeLists.txt); without it every kernel here would run on one thread.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "compile this file with OpenMP: LibTorch's parallel_for is OpenMP here"
#endif

namespace yolo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// (N, C, H, W) or blocked (N, C/B, H, W, B), as the kernels see it.
BnSiluShape Geometry(const at::Tensor& t) {
  return t.dim() == 5
             ? BnSiluShape{t.size(0), t.size(1) * t.size(4), t.size(2) * t.size(3), t.size(4)}
             : BnSiluShape{t.size(0), t.size(1), t.size(2) * t.size(3)};
}

// BatchNorm (training) + SiLU through the fused kernels of bn_silu_kernel.h, on a contiguous
// NCHW tensor (threads split the channels) or a blocked one (threads split channel blocks).
// Updates the running statistics; returns y, and sets x̂ (bfloat16 with FusedBatchNormKeepsBf16)
// and the batch's mean and inverse standard deviation (2, C).
at::Tensor BnSiluTrainForward(const at::Tensor& z, const at::Tensor& g, const at::Tensor& b,
                              at::Tensor running_mean, at::Tensor running_var, double momentum,
                              double eps, at::Tensor* xhat_out, at::Tensor* mean_invstd) {
  const bool blocked = z.dim() == 5;
  const BnSiluShape s = Geometry(z);
  const int64_t units = blocked ? s.c / s.block : s.c;  // what the threads split
  at::Tensor y = at::empty_like(z);
  const bool bf16 = FusedBatchNormKeepsBf16();
  at::Tensor xhat = at::empty(z.sizes(), z.options().dtype(bf16 ? at::kBFloat16 : at::kFloat));
  at::Tensor stats = at::empty({3, s.c}, z.options());  // mean, invstd, unbiased variance
  float* st = stats.data_ptr<float>();
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    auto run = [&](auto* x) {  // x̂ as bfloat16 bits or float: the kernel overloads
      if (blocked) {
        BnSiluForwardBlocked(z.data_ptr<float>(), s, begin, end, eps, g.data_ptr<float>(),
                             b.data_ptr<float>(), st, st + s.c, st + 2 * s.c, x,
                             y.data_ptr<float>());
      } else {
        BnSiluForward(z.data_ptr<float>(), s, begin, end, eps, g.data_ptr<float>(),
                      b.data_ptr<float>(), st, st + s.c, st + 2 * s.c, x, y.data_ptr<float>());
      }
    };
    if (bf16) {
      run(reinterpret_cast<uint16_t*>(xhat.data_ptr<at::BFloat16>()));
    } else {
      run(xhat.data_ptr<float>());
    }
  });
  {
    at::NoGradGuard no_grad;
    running_mean.mul_(1.0 - momentum).add_(stats[0], momentum);
    running_var.mul_(1.0 - momentum).add_(stats[2], momentum);
  }
  *xhat_out = std::move(xhat);
  *mean_invstd = stats.narrow(0, 0, 2);
  return y;
}

// The gradients of z, gamma and beta from y's and the forward pass's x̂.
std::array<at::Tensor, 3> BnSiluTrainBackward(const at::Tensor& gy_in, const at::Tensor& xhat,
                                              const at::Tensor& gamma, const at::Tensor& beta,
                                              const at::Tensor& invstd_in) {
  const at::Tensor invstd = invstd_in.contiguous();
  const at::Tensor gy = gy_in.to(at::kFloat).contiguous();
  const bool blocked = xhat.dim() == 5;
  const BnSiluShape s = Geometry(xhat);
  at::Tensor gz = at::empty_like(gy);
  at::Tensor gparams = at::empty({2, s.c}, gy.options());  // gamma, beta
  float* gp = gparams.data_ptr<float>();
  const int64_t units = blocked ? s.c / s.block : s.c;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    auto run = [&](const auto* x) {
      if (blocked) {
        BnSiluBackwardBlocked(gy.data_ptr<float>(), x, s, begin, end, gamma.data_ptr<float>(),
                              beta.data_ptr<float>(), invstd.data_ptr<float>(),
                              gz.data_ptr<float>(), gp, gp + s.c);
      } else {
        BnSiluBackward(gy.data_ptr<float>(), x, s, begin, end, gamma.data_ptr<float>(),
                       beta.data_ptr<float>(), invstd.data_ptr<float>(), gz.data_ptr<float>(), gp,
                       gp + s.c);
      }
    };
    if (xhat.scalar_type() == at::kBFloat16) {
      run(reinterpret_cast<const uint16_t*>(xhat.data_ptr<at::BFloat16>()));
    } else {
      run(xhat.data_ptr<float>());
    }
  });
  return {gz, gparams[0], gparams[1]};
}

class CpuBatchNormSiluFunction : public torch::autograd::Function<CpuBatchNormSiluFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z_in, const at::Tensor& gamma,
                            const at::Tensor& beta, at::Tensor running_mean, at::Tensor running_var,
                            double momentum, double eps) {
    const at::Tensor g = gamma.contiguous(), b = beta.contiguous();
    at::Tensor xhat, stats;
    at::Tensor y = BnSiluTrainForward(z_in.contiguous(), g, b, std::move(running_mean),
                                      std::move(running_var), momentum, eps, &xhat, &stats);
    ctx->save_for_backward({xhat, g, b, stats[1]});
    if (y.dim() == 5) RecordBatchNormSilu(y, xhat, g, b);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto [gz, ggamma, gbeta] =
        BnSiluTrainBackward(grads[0], saved[0], saved[1], saved[2], saved[3]);
    return {gz, ggamma, gbeta, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Nearest-neighbour ×2: each input position feeds a 2×2 square of outputs, whose gradients are
// added back with three strided adds (autograd's reduction of the expanded dimensions is
// several times slower).
class BlockedUpsampleFunction : public torch::autograd::Function<BlockedUpsampleFunction> {
 public:
  static at::Tensor forward(AutogradContext* /*ctx*/, const at::Tensor& x) {
    const int64_t n = x.size(0), cb = x.size(1), h = x.size(2), w = x.size(3), b = x.size(4);
    return x.reshape({n, cb, h, 1, w, 1, b})
        .expand({n, cb, h, 2, w, 2, b})
        .reshape({n, cb, 2 * h, 2 * w, b});
  }
  static variable_list backward(AutogradContext* /*ctx*/, variable_list grads) {
    const at::Tensor& g = grads[0];
    const int64_t n = g.size(0), cb = g.size(1), h = g.size(2) / 2, w = g.size(3) / 2;
    const at::Tensor rows = g.reshape({n, cb, h, 2, w, 2, g.size(4)});
    const at::Tensor pairs = rows.select(3, 0) + rows.select(3, 1);  // (n, cb, h, w, 2, B)
    return {pairs.select(4, 0) + pairs.select(4, 1)};
  }
};

#ifdef YOLO_WITH_ONEDNN
using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& Stream() {
  static dnnl::stream stream(Engine());
  return stream;
}

// Everything oneDNN needs for one convolution geometry: made once, used every step.
struct ConvPrimitives {
  memory::desc src, dst, weights, bias;  // as our tensors hold them
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc data_pd;
  dnnl::convolution_backward_data data;
  dnnl::convolution_backward_weights::primitive_desc weights_pd;
  dnnl::convolution_backward_weights weights_prim;
  // oneDNN's optimised kernels cover every direction: for some tiny geometries (a 3x3 kernel
  // over a 2x2 map) only its reference code does, which is far slower than LibTorch's own;
  // false also where oneDNN refused the geometry.
  bool optimised = true;
};

using ConvKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           bool, bool, bool>;

std::unique_ptr<ConvPrimitives> MakePrimitives(const ConvKey& key, dnnl::algorithm algorithm) {
  const auto [n, ic, h, w, oc, k, stride, pad, src_blocked, dst_blocked, has_bias] = key;
  const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
  auto p = std::make_unique<ConvPrimitives>();
  const auto f32 = memory::data_type::f32;
  const Tag blocked = BlockedLayoutWidth() == 16 ? Tag::nChw16c : Tag::nChw8c;
  p->src = memory::desc({n, ic, h, w}, f32, src_blocked ? blocked : Tag::nchw);
  p->dst = memory::desc({n, oc, oh, ow}, f32, dst_blocked ? blocked : Tag::nchw);
  p->weights = memory::desc({oc, ic, k, k}, f32, Tag::oihw);
  p->bias = has_bias ? memory::desc({oc}, f32, Tag::x) : memory::desc();
  // Where a side is NCHW (the image, the head's outputs), oneDNN picks its own layout for it
  // and the data are reordered: the kernels for mixed layouts are slow or missing.
  const memory::desc any_weights({oc, ic, k, k}, f32, Tag::any);
  const memory::desc any_src({n, ic, h, w}, f32, Tag::any);
  const memory::desc& src = src_blocked ? p->src : any_src;
  const memory::desc& dst = dst_blocked ? p->dst : memory::desc({n, oc, oh, ow}, f32, Tag::any);
  const memory::dims strides{stride, stride}, padding{pad, pad};
  // Scratch memory (Winograd's transformed tiles, for one) comes from LibTorch's allocator
  // (WithScratchpad): counted with the rest, and out of memory is its bad_alloc.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  p->fwd_pd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, src,
                                      any_weights, p->bias, dst, strides, padding, padding),
      attr, Engine());
  p->fwd = dnnl::convolution_forward(p->fwd_pd);
  if (src_blocked) {  // the image needs no gradient
    p->data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(algorithm, src, any_weights, dst, strides, padding,
                                              padding),
        attr, Engine(), p->fwd_pd);
    p->data = dnnl::convolution_backward_data(p->data_pd);
  }
  p->weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(algorithm, src, any_weights, p->bias, dst, strides,
                                               padding, padding),
      attr, Engine(), p->fwd_pd);
  p->weights_prim = dnnl::convolution_backward_weights(p->weights_pd);
  auto is_reference = [](const std::string& impl) { return impl.rfind("ref", 0) == 0; };
  p->optimised = !is_reference(p->fwd_pd.impl_info_str()) &&
                 !is_reference(p->weights_pd.impl_info_str()) &&
                 !(src_blocked && is_reference(p->data_pd.impl_info_str()));
  return p;
}

std::unique_ptr<ConvPrimitives> MakePrimitives(const ConvKey& key) {
  const int64_t k = std::get<5>(key), stride = std::get<6>(key);
  const bool src_blocked = std::get<8>(key), dst_blocked = std::get<9>(key);
  // Winograd where oneDNN has it (see WinogradEnabled), direct convolution elsewhere.
  if (k == 3 && stride == 1 && src_blocked && dst_blocked && WinogradEnabled()) {
    try {
      auto p = MakePrimitives(key, dnnl::algorithm::convolution_winograd);
      if (p->optimised) return p;
    } catch (const dnnl::error&) {  // no Winograd kernel for this CPU or geometry
    }
  }
  return MakePrimitives(key, dnnl::algorithm::convolution_direct);
}

std::mutex primitives_mu;
std::map<ConvKey, std::unique_ptr<ConvPrimitives>>& PrimitivesCache() {
  static auto* cache = new std::map<ConvKey, std::unique_ptr<ConvPrimitives>>();
  return *cache;
}

const ConvPrimitives& Primitives(const ConvKey& key) {
  std::lock_guard<std::mutex> lock(primitives_mu);
  auto& slot = PrimitivesCache()[key];
  if (!slot) {
    try {
      slot = MakePrimitives(key);
    } catch (const dnnl::error&) {  // a geometry oneDNN does not take: LibTorch's ops run it
      slot = std::make_unique<ConvPrimitives>();
      slot->optimised = false;
    }
  }
  return *slot;
}

memory Wrap(const memory::desc& d, const at::Tensor& t) {
  return memory(d, Engine(), const_cast<void*>(t.data_ptr()));
}

// `t` (laid out as `have`) in the layout `want`: itself when they agree, else a reordered copy
// kept alive in `*holder`.
memory InLayout(const memory::desc& have, const at::Tensor& t, const memory::desc& want,
                at::Tensor* holder) {
  memory m = Wrap(have, t);
  if (have == want) return m;
  *holder = at::empty({static_cast<int64_t>(want.get_size() / sizeof(float))}, t.options());
  memory out = Wrap(want, *holder);
  dnnl::reorder(m, out).execute(Stream(), m, out);
  return out;
}

// `args` with the scratch memory `desc` asks for, allocated in `*holder`; unchanged when it
// asks for none.
std::unordered_map<int, memory> WithScratchpad(std::unordered_map<int, memory> args,
                                               const memory::desc& desc, at::Tensor* holder) {
  if (desc.get_size() > 0) {
    *holder = at::empty({static_cast<int64_t>(desc.get_size())}, at::TensorOptions(at::kByte));
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(desc, Engine(), holder->data_ptr()));
  }
  return args;
}

ConvKey KeyOf(const at::Tensor& x, const at::Tensor& weight, int64_t stride, int64_t padding,
              bool out_blocked, bool has_bias) {
  const bool src_blocked = x.dim() == 5;
  const int64_t ic = src_blocked ? x.size(1) * x.size(4) : x.size(1);
  return {x.size(0), ic,      x.size(2),   x.size(3),   weight.size(0), weight.size(2),
          stride,    padding, src_blocked, out_blocked, has_bias};
}

// y = conv(x, weight) + bias through oneDNN, outside autograd.
at::Tensor ConvForward(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias,
                       int64_t stride, int64_t padding, bool out_blocked) {
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const bool has_bias = bias.defined() && bias.numel() > 0;
  const ConvPrimitives& p = Primitives(KeyOf(x, weight, stride, padding, out_blocked, has_bias));
  const memory::dims& d = p.dst.dims();
  const int64_t width = BlockedLayoutWidth();
  at::Tensor y = out_blocked ? at::empty({d[0], d[1] / width, d[2], d[3], width}, x.options())
                             : at::empty({d[0], d[1], d[2], d[3]}, x.options());
  at::Tensor src_copy, weights_copy, dst_copy;
  const memory::desc& dst_desc = p.fwd_pd.dst_desc();
  if (dst_desc != p.dst) {
    dst_copy = at::empty({static_cast<int64_t>(dst_desc.get_size() / sizeof(float))}, x.options());
  }
  memory dst = Wrap(dst_desc, dst_copy.defined() ? dst_copy : y);
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, InLayout(p.src, x, p.fwd_pd.src_desc(), &src_copy)},
      {DNNL_ARG_WEIGHTS, InLayout(p.weights, weight, p.fwd_pd.weights_desc(), &weights_copy)},
      {DNNL_ARG_DST, dst}};
  const at::Tensor b = has_bias ? bias.contiguous() : at::Tensor();
  if (has_bias) args.emplace(DNNL_ARG_BIAS, Wrap(p.bias, b));
  at::Tensor scratch;
  p.fwd.execute(Stream(), WithScratchpad(std::move(args), p.fwd_pd.scratchpad_desc(), &scratch));
  if (dst_copy.defined()) {
    memory out = Wrap(p.dst, y);
    dnnl::reorder(dst, out).execute(Stream(), dst, out);
  }
  return y;
}

// The gradients of x (when `want_gx` and x is blocked), of the weight and of the bias (when
// `has_bias`) from y's.
std::array<at::Tensor, 3> ConvBackward(const at::Tensor& x, const at::Tensor& weight,
                                       const at::Tensor& gy_in, int64_t stride, int64_t padding,
                                       bool out_blocked, bool has_bias, bool want_gx) {
  const ConvPrimitives& p = Primitives(KeyOf(x, weight, stride, padding, out_blocked, has_bias));
  const at::Tensor gy = gy_in.contiguous();
  at::Tensor gx, gw = at::empty_like(weight), gb;
  if (x.dim() == 5 && want_gx) {
    gx = at::empty_like(x);
    at::Tensor weights_copy, gy_copy, scratch;
    p.data.execute(
        Stream(),
        WithScratchpad(
            {{DNNL_ARG_DIFF_DST, InLayout(p.dst, gy, p.data_pd.diff_dst_desc(), &gy_copy)},
             {DNNL_ARG_WEIGHTS,
              InLayout(p.weights, weight, p.data_pd.weights_desc(), &weights_copy)},
             {DNNL_ARG_DIFF_SRC, Wrap(p.src, gx)}},
            p.data_pd.scratchpad_desc(), &scratch));
  }
  at::Tensor src_copy, gy_copy;
  const memory::desc& gw_desc = p.weights_pd.diff_weights_desc();
  at::Tensor gw_blocked = gw;
  if (gw_desc != p.weights) {
    gw_blocked =
        at::empty({static_cast<int64_t>(gw_desc.get_size() / sizeof(float))}, weight.options());
  }
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, InLayout(p.src, x, p.weights_pd.src_desc(), &src_copy)},
      {DNNL_ARG_DIFF_DST, InLayout(p.dst, gy, p.weights_pd.diff_dst_desc(), &gy_copy)},
      {DNNL_ARG_DIFF_WEIGHTS, Wrap(gw_desc, gw_blocked)}};
  if (has_bias) {
    gb = at::empty({weight.size(0)}, weight.options());
    args.emplace(DNNL_ARG_DIFF_BIAS, Wrap(p.bias, gb));
  }
  at::Tensor scratch;
  p.weights_prim.execute(Stream(),
                         WithScratchpad(std::move(args), p.weights_pd.scratchpad_desc(), &scratch));
  if (gw_desc != p.weights) {
    memory from = Wrap(gw_desc, gw_blocked), to = Wrap(p.weights, gw);
    dnnl::reorder(from, to).execute(Stream(), from, to);
  }
  return {gx, gw, gb};
}

// Saves what rebuilds `x_in` in backward (recompute.h), or `x` itself; the weight last.
void SaveInput(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& x,
               std::vector<at::Tensor> rest) {
  RecomputePlan plan;
  if (PlanRecompute(x_in, &plan)) {
    ctx->saved_data["recompute"] = c10::List<int64_t>(plan.steps);
  } else {
    plan.leaves = {x};
  }
  ctx->saved_data["leaves"] = static_cast<int64_t>(plan.leaves.size());
  plan.leaves.insert(plan.leaves.end(), rest.begin(), rest.end());
  ctx->save_for_backward(plan.leaves);
}

// The input SaveInput saved, and the tensors saved after it.
at::Tensor SavedInput(AutogradContext* ctx, std::vector<at::Tensor>* rest) {
  std::vector<at::Tensor> saved = ctx->get_saved_variables();
  const int64_t leaves = ctx->saved_data["leaves"].toInt();
  rest->assign(saved.begin() + leaves, saved.end());
  saved.resize(leaves);
  const auto steps = ctx->saved_data.find("recompute");
  return steps == ctx->saved_data.end() ? saved[0]
                                        : Recompute(saved, steps->second.toIntList().vec());
}

class BlockedConvFunction : public torch::autograd::Function<BlockedConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& weight_in, const at::Tensor& bias, int64_t stride,
                            int64_t padding, bool out_blocked) {
    const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
    at::Tensor y = ConvForward(x, weight, bias, stride, padding, out_blocked);
    // An input made of BatchNorm+SiLU outputs (recompute.h) is rebuilt from their x̂ for the
    // weight gradient rather than kept: one activation-sized tensor less per layer until
    // backward.
    SaveInput(ctx, x_in, x, {weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["out_blocked"] = out_blocked;
    ctx->saved_data["has_bias"] = bias.numel() > 0;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    std::vector<at::Tensor> rest;
    const at::Tensor x = SavedInput(ctx, &rest);
    auto [gx, gw, gb] =
        ConvBackward(x, rest[0], grads[0], ctx->saved_data["stride"].toInt(),
                     ctx->saved_data["padding"].toInt(), ctx->saved_data["out_blocked"].toBool(),
                     ctx->saved_data["has_bias"].toBool(), ctx->needs_input_grad(0));
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// A convolution (blocked output, no bias) followed by BatchNorm+SiLU that keeps neither its
// output nor x̂: backward runs the convolution again and normalises its output with the saved
// statistics, which gives x̂'s bits again (recompute.h).
class BlockedConvBnSiluFunction : public torch::autograd::Function<BlockedConvBnSiluFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& weight_in, const at::Tensor& gamma,
                            const at::Tensor& beta, at::Tensor running_mean, at::Tensor running_var,
                            int64_t stride, int64_t padding, double momentum, double eps) {
    const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
    const at::Tensor g = gamma.contiguous(), b = beta.contiguous();
    at::Tensor xhat, stats;
    at::Tensor y = BnSiluTrainForward(ConvForward(x, weight, {}, stride, padding, true), g, b,
                                      std::move(running_mean), std::move(running_var), momentum,
                                      eps, &xhat, &stats);
    SaveInput(ctx, x_in, x, {weight, g, b, stats});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    const bool rebuilt = ctx->saved_data.find("recompute") != ctx->saved_data.end();
    RecordConvBatchNormSilu(y, rebuilt ? x_in : x, weight, stats, g, b, stride, padding);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    std::vector<at::Tensor> rest;
    const at::Tensor x = SavedInput(ctx, &rest);
    const at::Tensor &weight = rest[0], &gamma = rest[1], &beta = rest[2], &stats = rest[3];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const int64_t padding = ctx->saved_data["padding"].toInt();
    const at::Tensor xhat = NormalisedConvOutput(x, weight, stats, stride, padding, /*last=*/true);
    auto [gz, ggamma, gbeta] = BnSiluTrainBackward(grads[0], xhat, gamma, beta, stats[1]);
    auto [gx, gw, gb] = ConvBackward(x, weight, gz, stride, padding, /*out_blocked=*/true,
                                     /*has_bias=*/false, ctx->needs_input_grad(0));
    return {gx,           gw,           ggamma,       gbeta,        at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
#endif  // YOLO_WITH_ONEDNN

}  // namespace

// An environment switch: "0" or "1" override `fallback`, anything else leaves it.
static bool EnvSwitch(const char* name, bool fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr) return fallback;
  const std::string v = env;
  return v == "1" ? true : v == "0" ? false : fallback;
}

bool WinogradEnabled() {
  static const bool enabled = EnvSwitch("YOLO_WINOGRAD", true);
  return enabled;
}

bool FusedBatchNormEnabled() {
  static const bool enabled = EnvSwitch("YOLO_FUSED_BN", true);
  return enabled;
}

bool RecomputeEnabled() {
  static const bool enabled = EnvSwitch("YOLO_RECOMPUTE", true);
  return enabled;
}

bool FusedBatchNormKeepsBf16() {
  static const bool bf16 = EnvSwitch("YOLO_BN_BF16", false);
  return bf16;
}

bool BlockedLayoutAvailable() {
#ifdef YOLO_WITH_ONEDNN
  static const bool available =
      BnSiluVectorised() && FusedBatchNormEnabled() && EnvSwitch("YOLO_BLOCKED_LAYOUT", true);
  return available;
#else
  return false;
#endif
}

int BlockedLayoutWidth() {
  static const int width = [] {
    if (const char* env = std::getenv("YOLO_BLOCK_WIDTH")) {
      const std::string v = env;
      if (v == "8") return 8;
      if (v == "16") return 16;
    }
#ifdef YOLO_WITH_ONEDNN
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    return (isa & avx512) == avx512 ? 16 : 8;
#else
    return 8;
#endif
  }();
  return width;
}

at::Tensor ToBlocked(const at::Tensor& nchw) {
  const int64_t n = nchw.size(0), c = nchw.size(1), h = nchw.size(2), w = nchw.size(3);
  const int64_t b = BlockedLayoutWidth();
  return nchw.reshape({n, c / b, b, h, w}).permute({0, 1, 3, 4, 2}).contiguous();
}

at::Tensor FromBlocked(const at::Tensor& blocked) {
  const int64_t n = blocked.size(0), cb = blocked.size(1);
  return blocked.permute({0, 1, 4, 2, 3})
      .reshape({n, cb * blocked.size(4), blocked.size(2), blocked.size(3)});
}

at::Tensor BlockedConv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t stride, int64_t padding, bool out_blocked) {
#ifdef YOLO_WITH_ONEDNN
  const bool has_bias = bias.defined() && bias.numel() > 0;
  if (!Primitives(KeyOf(x, weight, stride, padding, out_blocked, has_bias)).optimised) {
    const at::Tensor nchw = x.dim() == 5 ? FromBlocked(x) : x;
    const at::Tensor y = at::conv2d(nchw, weight, bias, stride, padding);
    return out_blocked ? ToBlocked(y) : y;
  }
  // Autograd's inputs must be defined tensors: no bias travels as an empty one.
  return BlockedConvFunction::apply(x, weight,
                                    bias.defined() ? bias : at::empty({0}, weight.options()),
                                    stride, padding, out_blocked);
#else
  (void)x, (void)weight, (void)bias, (void)stride, (void)padding, (void)out_blocked;
  throw std::logic_error("BlockedConv2d: built without oneDNN");
#endif
}

void ForgetConvolutionKernels() {
#ifdef YOLO_WITH_ONEDNN
  {
    std::lock_guard<std::mutex> lock(primitives_mu);
    PrimitivesCache().clear();
  }
  const int capacity = dnnl::get_primitive_cache_capacity();
  dnnl::set_primitive_cache_capacity(0);  // which empties it
  dnnl::set_primitive_cache_capacity(capacity);
#endif
}

at::Tensor BlockedConvForward(const at::Tensor& x, const at::Tensor& weight, int64_t stride,
                              int64_t padding) {
#ifdef YOLO_WITH_ONEDNN
  return ConvForward(x, weight, {}, stride, padding, /*out_blocked=*/true);
#else
  (void)x, (void)weight, (void)stride, (void)padding;
  throw std::logic_error("BlockedConvForward: built without oneDNN");
#endif
}

at::Tensor BlockedConvBatchNormSilu(const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& gamma, const at::Tensor& beta,
                                    at::Tensor running_mean, at::Tensor running_var, int64_t stride,
                                    int64_t padding, double momentum, double eps) {
#ifdef YOLO_WITH_ONEDNN
  if (RecomputeActive() && !FusedBatchNormKeepsBf16() &&
      Primitives(KeyOf(x, weight, stride, padding, true, false)).optimised) {
    return BlockedConvBnSiluFunction::apply(x, weight, gamma, beta, std::move(running_mean),
                                            std::move(running_var), stride, padding, momentum, eps);
  }
#endif
  const at::Tensor z = BlockedConv2d(x, weight, /*bias=*/{}, stride, padding, true);
  return CpuBatchNormSilu(z, gamma, beta, std::move(running_mean), std::move(running_var), momentum,
                          eps);
}

bool CpuBatchNormSiluHandles(const at::Tensor& z) {
  return FusedBatchNormEnabled() && z.device().is_cpu() && z.scalar_type() == at::kFloat &&
         ((z.dim() == 4 && z.is_contiguous()) || (z.dim() == 5 && BlockedLayoutAvailable()));
}

at::Tensor CpuBatchNormSilu(const at::Tensor& z, const at::Tensor& gamma, const at::Tensor& beta,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps) {
  return CpuBatchNormSiluFunction::apply(z, gamma, beta, running_mean, running_var, momentum, eps);
}

at::Tensor BlockedUpsample2x(const at::Tensor& x) {
  at::Tensor y = BlockedUpsampleFunction::apply(x);
  RecordUpsample(y, x);
  return y;
}

at::Tensor ConcatChannels(const std::vector<at::Tensor>& parts) {
  at::Tensor y = at::cat(parts, 1);
  if (y.dim() == 5) RecordCat(y, parts);
  return y;
}

std::vector<at::Tensor> ChunkChannels(const at::Tensor& x, int64_t chunks) {
  std::vector<at::Tensor> parts = x.chunk(chunks, 1);
  if (x.dim() == 5) RecordChunks(parts, x);
  return parts;
}

at::Tensor AddActivations(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor y = a + b;
  if (y.dim() == 5) RecordAdd(y, a, b);
  return y;
}

}  // namespace yolo
