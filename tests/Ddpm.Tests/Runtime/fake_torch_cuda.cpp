// A stand-in for libtorch_cuda.so in the CUDA-graph shim's CPU tests (tests/Ddpm.Tests/Runtime/CudaGraphShimTests.cs).
// It declares at::cuda::CUDAGraph's members with the signatures of PyTorch 2.10/2.11's aten/src/ATen/cuda/CUDAGraph.h
// and the stable C stream functions, so g++ gives them the same mangled names the shim looks up (a wrong name in the
// shim fails the bind test), records every call with its arguments (the pool pair and capture mode must arrive
// intact through the shim's function pointers), and throws or fails where the test asks.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#define FAKE_API __attribute__((visibility("default")))

enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };

namespace {
std::string g_log;
std::string g_fail_in;  // which function fails
int g_fail_kind = 0;    // 1: throws std::runtime_error, 2: throws an int, 3: returns error code 1 (C functions)
constexpr unsigned kAlive = 0xC0FFEEu;

void call(const std::string& what, const char* name) {
  g_log += what;
  g_log += ';';
  if (g_fail_in != name) return;
  if (g_fail_kind == 1) throw std::runtime_error(std::string("fake ") + name + " failed");
  if (g_fail_kind == 2) throw 42;
}

int32_t c_call(const std::string& what, const char* name) {
  call(what, name);
  return g_fail_in == name && g_fail_kind == 3 ? 1 : 0;
}
}  // namespace

namespace at {
namespace cuda {
struct FAKE_API CUDAGraph {
  explicit CUDAGraph(bool keep_graph = false);
  ~CUDAGraph();
  void capture_begin(std::pair<unsigned long long, unsigned long long> pool = {0, 0},
                     cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal);
  void capture_end();
  void replay();
  unsigned alive;
  bool keep;
  std::string* state;  // heap memory: a leak checker would see a missing destructor call
};

CUDAGraph::CUDAGraph(bool keep_graph) : alive(kAlive), keep(keep_graph), state(nullptr) {
  call(std::string("ctor(") + (keep_graph ? "1" : "0") + ")", "ctor");
  state = new std::string("constructed");
}

CUDAGraph::~CUDAGraph() {
  g_log += alive == kAlive ? "dtor;" : "dtor(not constructed);";
  delete state;
  alive = 0;
}

void CUDAGraph::capture_begin(std::pair<unsigned long long, unsigned long long> pool, cudaStreamCaptureMode capture_mode) {
  char text[96];
  std::snprintf(text, sizeof text, "capture_begin(%llu,%llu,%d)%s", pool.first, pool.second, static_cast<int>(capture_mode),
                alive == kAlive ? "" : "(not constructed)");
  call(text, "capture_begin");
}

void CUDAGraph::capture_end() { call(alive == kAlive ? "capture_end" : "capture_end(not constructed)", "capture_end"); }

void CUDAGraph::replay() { call(alive == kAlive ? "replay" : "replay(not constructed)", "replay"); }
}  // namespace cuda
}  // namespace at

extern "C" {
FAKE_API int32_t torch_get_cuda_stream_from_pool(bool high_priority, int32_t device, void** stream) {
  *stream = reinterpret_cast<void*>(0x5000 + device);
  return c_call("pool_stream(" + std::to_string(high_priority) + "," + std::to_string(device) + ")", "pool_stream");
}

FAKE_API int32_t torch_set_current_cuda_stream(void* stream, int32_t device) {
  char text[64];
  std::snprintf(text, sizeof text, "set_stream(%p,%d)", stream, device);
  return c_call(text, "set_stream");
}

FAKE_API int32_t aoti_torch_get_current_cuda_stream(int32_t device, void** stream) {
  *stream = nullptr;
  return c_call("current_stream(" + std::to_string(device) + ")", "current_stream");
}

FAKE_API int32_t torch_cuda_stream_synchronize(void* stream, int32_t device) {
  char text[64];
  std::snprintf(text, sizeof text, "sync_stream(%p,%d)", stream, device);
  return c_call(text, "sync_stream");
}

// Test controls: the calls so far (cleared by each read), and which function fails how.
FAKE_API const char* fake_torch_log() {
  static std::string last;
  last = g_log;
  g_log.clear();
  return last.c_str();
}

FAKE_API void fake_torch_fail(const char* function, int kind) {
  g_fail_in = function != nullptr ? function : "";
  g_fail_kind = kind;
}
}
