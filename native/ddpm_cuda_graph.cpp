// CUDA graphs for ddpm: an extern "C" shim over libtorch's at::cuda::CUDAGraph and its CUDA stream functions,
// called from .NET (src/Ddpm/Runtime/CudaGraphNative.cs). TorchSharp 0.107 exposes neither.
//
// No libtorch headers: the shim binds at run time to a libtorch that is ALREADY loaded in the process
// (dlopen with RTLD_NOLOAD, so it can never load a second libtorch copy) and looks the functions up by name:
//   at::cuda::CUDAGraph (aten/src/ATen/cuda/CUDAGraph.h, PyTorch 2.10/2.11), C++ members, Itanium-mangled:
//     CUDAGraph(bool keep_graph = false)                                  _ZN2at4cuda9CUDAGraphC1Eb
//     ~CUDAGraph()                                                        _ZN2at4cuda9CUDAGraphD1Ev
//     void capture_begin(MempoolId_t pool = {0, 0},                       _ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode
//                        cudaStreamCaptureMode mode = Global)
//       with MempoolId_t = std::pair<CaptureId_t, CaptureId_t>, CaptureId_t = unsigned long long
//     void capture_end()                                                  _ZN2at4cuda9CUDAGraph11capture_endEv
//     void replay()                                                       _ZN2at4cuda9CUDAGraph6replayEv
//   the stable C API (torch/csrc/stable/c/shim.h since 2.10; aoti_torch/c/shim.h), returning 0 on success:
//     torch_get_cuda_stream_from_pool(bool high_priority, int32_t device, void** stream)
//     torch_set_current_cuda_stream(void* stream, int32_t device)
//     aoti_torch_get_current_cuda_stream(int32_t device, void** stream)
//     torch_cuda_stream_synchronize(void* stream, int32_t device)
// A member function is called as a free function whose first argument is `this` (x86-64 System V / Itanium ABI);
// std::pair<u64, u64> is trivially copyable for calls, so it travels in two registers like in libtorch itself.
//
// Every entry point catches every C++ exception (libtorch throws c10::Error) and returns its message; NULL means
// success. A C++ exception unwinding into .NET would abort the process. Messages live in a thread-local buffer that
// stays valid until the next call on the same thread.
//
// Built by src/Ddpm/Ddpm.csproj with g++ where a compiler exists:
//   g++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -o libddpm_cuda_graph.so ddpm_cuda_graph.cpp

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <exception>
#include <utility>

// Bind the dl* functions to their oldest version, so a shim built on glibc >= 2.34 (where they moved into libc with
// version GLIBC_2.34) still loads on older systems (there they live in libdl, which libtorch has loaded).
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");

#define DDPM_API extern "C" __attribute__((visibility("default")))

namespace {

// Bump when an entry point's signature changes; the .NET side refuses a shim of another version.
constexpr int kAbiVersion = 1;

// at::cuda::CUDAGraph is a few hundred bytes in PyTorch 2.10/2.11 (graph handles, flags, ids, a stream, a hash map,
// three std::stacks); the object lives in this much zeroed, 64-byte aligned memory owned by the shim.
constexpr size_t kGraphBytes = 4096;

using MempoolId = std::pair<unsigned long long, unsigned long long>;
using CtorBool = void (*)(void* self, bool keep_graph);
using CtorVoid = void (*)(void* self);
using Member = void (*)(void* self);
using CaptureBegin = void (*)(void* self, MempoolId pool, int capture_mode);
using PoolStream = int32_t (*)(bool high_priority, int32_t device, void** stream);
using SetStream = int32_t (*)(void* stream, int32_t device);
using CurrentStream = int32_t (*)(int32_t device, void** stream);
using SyncStream = int32_t (*)(void* stream, int32_t device);

struct Bound {
  CtorBool ctor_bool = nullptr;  // CUDAGraph(bool keep_graph), PyTorch >= 2.6
  CtorVoid ctor_void = nullptr;  // CUDAGraph(), older
  Member dtor = nullptr;
  CaptureBegin capture_begin = nullptr;
  Member capture_end = nullptr;
  Member replay = nullptr;
  PoolStream pool_stream = nullptr;
  SetStream set_stream = nullptr;
  CurrentStream current_stream = nullptr;
  SyncStream sync_stream = nullptr;
  bool ok = false;
};

Bound g_bound;
char g_bound_from[1024];
thread_local char t_message[4096];

const char* message(const char* where, const char* what) {
  std::snprintf(t_message, sizeof t_message, "%s: %s", where, what);
  return t_message;
}

// Runs f, turning any C++ exception into a message. Only for calls into libtorch.
template <typename F>
const char* guarded(const char* where, F&& f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception& e) {
    return message(where, e.what());
  } catch (...) {
    return message(where, "an unknown C++ exception");
  }
}

const char* code(const char* where, int32_t rc) {
  if (rc == 0) return nullptr;
  char what[160];
  std::snprintf(what, sizeof what, "failed with error code %d (libtorch printed the reason on stderr)", rc);
  return message(where, what);
}

void* find(void* const* handles, int count, const char* name) {
  for (int i = 0; i < count; i++)
    if (void* p = dlsym(handles[i], name)) return p;
  return nullptr;
}

const char* not_bound() { return message("CUDA graphs", "the shim is not bound to libtorch (ddpm_cg_bind failed or was not called)"); }

}  // namespace

DDPM_API int ddpm_cg_abi_version() { return kAbiVersion; }

// Binds to the libraries named in `libraries` (':'-separated sonames or paths) that are already loaded in this
// process; the first (libtorch_cuda.so) must be. Returns NULL when every function was found, else why not.
DDPM_API const char* ddpm_cg_bind(const char* libraries) {
  g_bound = Bound{};
  g_bound_from[0] = '\0';
  if (libraries == nullptr || *libraries == '\0') return message("CUDA graphs unavailable", "no libraries named to bind to");
  void* handles[16];
  int count = 0;
  char names[1024];
  std::snprintf(names, sizeof names, "%s", libraries);
  char loaded[1024] = "";
  bool first = true;
  for (char* save = nullptr, *name = strtok_r(names, ":", &save); name != nullptr && count < 16; name = strtok_r(nullptr, ":", &save)) {
    void* h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (h == nullptr && first) {
      char what[1200];
      std::snprintf(what, sizeof what, "%s is not loaded in this process (a CPU-only libtorch has no CUDA graphs)", name);
      return message("CUDA graphs unavailable", what);
    }
    first = false;
    if (h == nullptr) continue;
    handles[count++] = h;
    size_t used = std::strlen(loaded);
    std::snprintf(loaded + used, sizeof loaded - used, "%s%s", used > 0 ? ", " : "", name);
  }
  Bound b;
  b.ctor_bool = reinterpret_cast<CtorBool>(find(handles, count, "_ZN2at4cuda9CUDAGraphC1Eb"));
  b.ctor_void = reinterpret_cast<CtorVoid>(find(handles, count, "_ZN2at4cuda9CUDAGraphC1Ev"));
  b.dtor = reinterpret_cast<Member>(find(handles, count, "_ZN2at4cuda9CUDAGraphD1Ev"));
  b.capture_begin = reinterpret_cast<CaptureBegin>(
      find(handles, count, "_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode"));
  b.capture_end = reinterpret_cast<Member>(find(handles, count, "_ZN2at4cuda9CUDAGraph11capture_endEv"));
  b.replay = reinterpret_cast<Member>(find(handles, count, "_ZN2at4cuda9CUDAGraph6replayEv"));
  b.pool_stream = reinterpret_cast<PoolStream>(find(handles, count, "torch_get_cuda_stream_from_pool"));
  b.set_stream = reinterpret_cast<SetStream>(find(handles, count, "torch_set_current_cuda_stream"));
  if (b.set_stream == nullptr) b.set_stream = reinterpret_cast<SetStream>(find(handles, count, "aoti_torch_set_current_cuda_stream"));
  b.current_stream = reinterpret_cast<CurrentStream>(find(handles, count, "aoti_torch_get_current_cuda_stream"));
  b.sync_stream = reinterpret_cast<SyncStream>(find(handles, count, "torch_cuda_stream_synchronize"));

  char missing[1024] = "";
  auto need = [&](bool present, const char* what) {
    if (present) return;
    size_t used = std::strlen(missing);
    std::snprintf(missing + used, sizeof missing - used, "%s%s", used > 0 ? ", " : "", what);
  };
  need(b.ctor_bool != nullptr || b.ctor_void != nullptr, "at::cuda::CUDAGraph::CUDAGraph(bool)");
  need(b.dtor != nullptr, "at::cuda::CUDAGraph::~CUDAGraph()");
  need(b.capture_begin != nullptr, "at::cuda::CUDAGraph::capture_begin(MempoolId_t, cudaStreamCaptureMode)");
  need(b.capture_end != nullptr, "at::cuda::CUDAGraph::capture_end()");
  need(b.replay != nullptr, "at::cuda::CUDAGraph::replay()");
  need(b.pool_stream != nullptr, "torch_get_cuda_stream_from_pool");
  need(b.set_stream != nullptr, "torch_set_current_cuda_stream");
  need(b.current_stream != nullptr, "aoti_torch_get_current_cuda_stream");
  need(b.sync_stream != nullptr, "torch_cuda_stream_synchronize");
  if (missing[0] != '\0') {
    char what[2200];
    std::snprintf(what, sizeof what, "not found in %s: %s (another PyTorch version?)", loaded, missing);
    return message("CUDA graphs unavailable", what);
  }
  b.ok = true;
  g_bound = b;
  std::snprintf(g_bound_from, sizeof g_bound_from, "%s", loaded);
  return nullptr;
}

// The libraries the last successful ddpm_cg_bind found (empty before).
DDPM_API const char* ddpm_cg_bound_libraries() { return g_bound_from; }

DDPM_API const char* ddpm_cg_create(int keep_graph, void** graph) {
  if (graph == nullptr) return message("ddpm_cg_create", "the output pointer is null");
  *graph = nullptr;
  if (!g_bound.ok) return not_bound();
  void* memory = nullptr;
  if (posix_memalign(&memory, 64, kGraphBytes) != 0) return message("ddpm_cg_create", "out of host memory");
  std::memset(memory, 0, kGraphBytes);
  const char* error = guarded("at::cuda::CUDAGraph::CUDAGraph", [&] {
    if (g_bound.ctor_bool != nullptr) g_bound.ctor_bool(memory, keep_graph != 0);
    else g_bound.ctor_void(memory);
  });
  if (error != nullptr) {
    std::free(memory);
    return error;
  }
  *graph = memory;
  return nullptr;
}

// Destroys the graph (its captured work and private memory pool) and frees its memory; NULL is accepted.
DDPM_API const char* ddpm_cg_destroy(void* graph) {
  if (graph == nullptr) return nullptr;
  if (!g_bound.ok) return not_bound();
  const char* error = guarded("at::cuda::CUDAGraph::~CUDAGraph", [&] { g_bound.dtor(graph); });
  std::free(graph);
  return error;
}

// Starts capturing the current stream's work into `graph`. pool = {0, 0}: a private memory pool for this graph.
// mode: cudaStreamCaptureMode (0 global, 1 thread-local, 2 relaxed).
DDPM_API const char* ddpm_cg_capture_begin(void* graph, unsigned long long pool_first, unsigned long long pool_second, int mode) {
  if (graph == nullptr) return message("ddpm_cg_capture_begin", "graph is null");
  if (mode < 0 || mode > 2) return message("ddpm_cg_capture_begin", "capture mode must be 0 (global), 1 (thread-local) or 2 (relaxed)");
  if (!g_bound.ok) return not_bound();
  return guarded("at::cuda::CUDAGraph::capture_begin", [&] { g_bound.capture_begin(graph, MempoolId{pool_first, pool_second}, mode); });
}

DDPM_API const char* ddpm_cg_capture_end(void* graph) {
  if (graph == nullptr) return message("ddpm_cg_capture_end", "graph is null");
  if (!g_bound.ok) return not_bound();
  return guarded("at::cuda::CUDAGraph::capture_end", [&] { g_bound.capture_end(graph); });
}

// Launches the captured work on the current stream.
DDPM_API const char* ddpm_cg_replay(void* graph) {
  if (graph == nullptr) return message("ddpm_cg_replay", "graph is null");
  if (!g_bound.ok) return not_bound();
  return guarded("at::cuda::CUDAGraph::replay", [&] { g_bound.replay(graph); });
}

DDPM_API const char* ddpm_cg_pool_stream(int device, int high_priority, void** stream) {
  if (stream == nullptr) return message("ddpm_cg_pool_stream", "the output pointer is null");
  *stream = nullptr;
  if (!g_bound.ok) return not_bound();
  int32_t rc = 0;
  const char* error = guarded("torch_get_cuda_stream_from_pool", [&] { rc = g_bound.pool_stream(high_priority != 0, device, stream); });
  return error != nullptr ? error : code("torch_get_cuda_stream_from_pool", rc);
}

DDPM_API const char* ddpm_cg_current_stream(int device, void** stream) {
  if (stream == nullptr) return message("ddpm_cg_current_stream", "the output pointer is null");
  *stream = nullptr;
  if (!g_bound.ok) return not_bound();
  int32_t rc = 0;
  const char* error = guarded("aoti_torch_get_current_cuda_stream", [&] { rc = g_bound.current_stream(device, stream); });
  return error != nullptr ? error : code("aoti_torch_get_current_cuda_stream", rc);
}

// Makes `stream` libtorch's current stream on `device` (NULL: the default stream).
DDPM_API const char* ddpm_cg_set_stream(void* stream, int device) {
  if (!g_bound.ok) return not_bound();
  int32_t rc = 0;
  const char* error = guarded("torch_set_current_cuda_stream", [&] { rc = g_bound.set_stream(stream, device); });
  return error != nullptr ? error : code("torch_set_current_cuda_stream", rc);
}

// Waits on the host until `stream`'s work is done.
DDPM_API const char* ddpm_cg_sync_stream(void* stream, int device) {
  if (!g_bound.ok) return not_bound();
  int32_t rc = 0;
  const char* error = guarded("torch_cuda_stream_synchronize", [&] { rc = g_bound.sync_stream(stream, device); });
  return error != nullptr ? error : code("torch_cuda_stream_synchronize", rc);
}
