// A thin C ABI over PyTorch's c10d (the engine behind torch.distributed), compiled
// against the same libtorch headers tch uses. Every entry point catches C++
// exceptions and reports them through `err` (a caller-owned buffer), returning a
// null pointer or a non-zero code; nothing throws across the boundary.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

// PLINTH_WITH_NCCL: build.rs found libtorch_cuda and the CUDA and NCCL headers
// ProcessGroupNCCL.hpp needs; without it the NCCL entry point only says so.
#ifdef PLINTH_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

void report(char* err, size_t err_len, const char* what) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, what, err_len - 1);
  err[err_len - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    report(err, err_len, e.what());
  } catch (...) {
    report(err, err_len, "unknown C++ exception in c10d");
  }
  return 1;
}

struct Store {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

struct Group {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

std::vector<at::Tensor> tensors_of(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

}  // namespace

extern "C" {

// Rendezvous through a TCPStore: rank 0 (is_server) listens on host:port, the
// others connect; `world_size` workers are awaited for up to `timeout_ms`.
void* plinth_c10d_store_new(const char* host, uint16_t port, int world_size, int is_server, int64_t timeout_ms,
                            char* err, size_t err_len) {
  Store* out = nullptr;
  guarded(err, err_len, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = world_size;
    opts.waitWorkers = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    out = new Store{store};
  });
  return out;
}

void plinth_c10d_store_free(void* store) { delete static_cast<Store*>(store); }

// A Gloo process group over the store (CPU tensors; the loopback or first interface).
void* plinth_c10d_gloo_new(void* store, int rank, int world_size, int64_t timeout_ms, char* err, size_t err_len) {
  Group* out = nullptr;
  guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto s = c10::static_intrusive_pointer_cast<c10d::Store>(static_cast<Store*>(store)->store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s, rank, world_size, opts);
    out = new Group{c10::static_intrusive_pointer_cast<c10d::Backend>(pg), timeout};
  });
  return out;
}

// 1 when this build can create NCCL process groups.
int plinth_c10d_has_nccl() {
#ifdef PLINTH_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

// An NCCL process group over the store, bound to CUDA device `device` (each
// rank its own GPU, usually LOCAL_RANK). Communicators are created on the
// first collective, as torch.distributed does.
void* plinth_c10d_nccl_new(void* store, int rank, int world_size, int device, int64_t timeout_ms, char* err,
                           size_t err_len) {
  Group* out = nullptr;
  guarded(err, err_len, [&] {
#ifdef PLINTH_WITH_NCCL
    int visible = static_cast<int>(c10::cuda::device_count());
    if (device < 0 || device >= visible) {
      throw std::runtime_error("NCCL needs CUDA device " + std::to_string(device) + " but " +
                               std::to_string(visible) + " CUDA device(s) are visible");
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    // Blocking wait: a collective that times out (a dead peer) throws from wait(),
    // so it reaches the caller as an error, as with Gloo, instead of the watchdog
    // tearing the process down. A value the user set is kept.
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    auto s = c10::static_intrusive_pointer_cast<c10d::Store>(static_cast<Store*>(store)->store);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world_size, opts);
    pg->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    out = new Group{c10::static_intrusive_pointer_cast<c10d::Backend>(pg), timeout};
#else
    (void)store;
    (void)rank;
    (void)world_size;
    (void)device;
    (void)timeout_ms;
    throw std::runtime_error(
        "this build of plinth has no NCCL: it was built against a libtorch without CUDA, or without the CUDA "
        "headers `./dev setup` installs; use the gloo backend");
#endif
  });
  return out;
}

void plinth_c10d_group_free(void* group) { delete static_cast<Group*>(group); }

// op: 0 sum, 1 product, 2 min, 3 max, 4 average (not in Gloo: callers divide).
int plinth_c10d_all_reduce(void* group, at::Tensor** tensors, size_t n, int op, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group*>(group);
    auto ts = tensors_of(tensors, n);
    c10d::AllreduceOptions o;
    switch (op) {
      case 0: o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM); break;
      case 1: o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::PRODUCT); break;
      case 2: o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::MIN); break;
      case 3: o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::MAX); break;
      default: throw std::invalid_argument("unknown reduce op");
    }
    o.timeout = g->timeout;
    auto work = g->backend->allreduce(ts, o);
    if (!work->wait(g->timeout)) throw std::runtime_error("all_reduce did not finish");
  });
}

int plinth_c10d_broadcast(void* group, at::Tensor** tensors, size_t n, int root, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group*>(group);
    auto ts = tensors_of(tensors, n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    auto work = g->backend->broadcast(ts, o);
    if (!work->wait(g->timeout)) throw std::runtime_error("broadcast did not finish");
  });
}

int plinth_c10d_barrier(void* group, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group*>(group);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    auto work = g->backend->barrier(o);
    if (!work->wait(g->timeout)) throw std::runtime_error("barrier did not finish");
  });
}

}  // extern "C"
