// ATen's fused AdamW (`torch._fused_adamw_`, the kernel behind
// `torch.optim.AdamW(fused=True)`), which tch does not bind: one pass over each
// parameter updates it and both moments in place, instead of the eight
// elementwise kernels and two temporaries of the composed update. A C ABI; C++
// exceptions come back through `err` (caller-owned), never across the boundary.

#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>

#include <cstring>
#include <exception>
#include <vector>

extern "C" int plinth_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                                  at::Tensor** exp_avg_sqs, size_t n, double step, double lr, double beta1,
                                  double beta2, double weight_decay, double eps, char* err, size_t err_len) {
  try {
    if (n == 0) return 0;
    std::vector<at::Tensor> p, g, m, v, steps;
    p.reserve(n);
    g.reserve(n);
    m.reserve(n);
    v.reserve(n);
    steps.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      // The kernel reads the step (bias correction) and leaves it: the caller counts.
      steps.push_back(at::full({}, step, p.back().options().dtype(at::kFloat)));
    }
    at::_fused_adamw_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                      /*maximize=*/false);
    return 0;
  } catch (const std::exception& e) {
    if (err != nullptr && err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
  }
  return 1;
}
