using System.Runtime.InteropServices;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Models;
using Ddpm.Runtime;
using Ddpm.Tests.Models;
using Ddpm.Tests.Training;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Runtime;

/// <summary>Tests that bind the process-wide CUDA-graph shim (to a fake libtorch) or change DDPM_CUDA_GRAPHS run
/// alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CudaGraphShimCollection
{
    public const string Name = "CUDA-graph shim";
}

/// <summary>A fact that needs g++ (the build compiles the shim and the fake libtorch with it); skipped without
/// one.</summary>
public sealed class NeedsCxxFactAttribute : FactAttribute
{
    public NeedsCxxFactAttribute()
    {
        if (!CxxCompiler.OnPath) Skip = "no g++ on PATH: the build could not compile the CUDA-graph shim";
    }
}

internal static class CxxCompiler
{
    public static bool OnPath => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Any(dir => File.Exists(Path.Combine(dir, "g++")));
}

/// <summary>
/// The shim (native/ddpm_cuda_graph.cpp) on the CPU: it is built, loads, and says why graphs are unavailable with the
/// CPU libtorch; bound to a fake libtorch_cuda (Runtime/fake_torch_cuda.cpp, declared like PyTorch's CUDAGraph.h) it
/// finds every function by its mangled name, passes arguments through intact, and turns every C++ exception and error
/// code into a message instead of aborting the process; <see cref="CudaGraph"/> drives it in the right order and
/// restores the stream on every error path; <see cref="GraphedForward"/> checks a shape's first replay against the
/// eager forward and drops a graph that disagrees.
/// <para>What these tests cannot catch: the fake records calls and captures nothing (its "capture" runs the body
/// eagerly on the CPU, its replay does nothing), so no test here can fail because a real CUDA graph replays wrong
/// numbers or is slow. That needs a GPU (scripts/device-check.sh); until one has run it graphs stay opt-in
/// (DDPM_CUDA_GRAPHS=1).</para>
/// </summary>
[Collection(CudaGraphShimCollection.Name)]
public sealed class CudaGraphShimTests : IDisposable
{
    private static readonly string FakePath = Path.Combine(AppContext.BaseDirectory, "libddpm_fake_torch_cuda.so");
    private static readonly Device Cuda = new("cuda");

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr LogFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void FailFn([MarshalAs(UnmanagedType.LPUTF8Str)] string function, int kind);

    private readonly LogFn _log;
    private readonly FailFn _fail;

    public CudaGraphShimTests()
    {
        if (!CxxCompiler.OnPath) { _log = () => IntPtr.Zero; _fail = (_, _) => { }; return; }
        Assert.True(File.Exists(FakePath), $"the test build did not compile {FakePath}");
        var fake = NativeLibrary.Load(FakePath); // RTLD_LOCAL: its symbols stay out of the global namespace
        _log = Marshal.GetDelegateForFunctionPointer<LogFn>(NativeLibrary.GetExport(fake, "fake_torch_log"));
        _fail = Marshal.GetDelegateForFunctionPointer<FailFn>(NativeLibrary.GetExport(fake, "fake_torch_fail"));
    }

    public void Dispose()
    {
        if (!CxxCompiler.OnPath) return;
        _fail("", 0);
        CudaGraphs.Bind(CudaGraphs.Libraries); // back to the real (CPU) libtorch: unavailable again
    }

    private string Log() => Marshal.PtrToStringUTF8(_log()) ?? "";

    private static string? Error(IntPtr message) => CudaGraphNative.Message(message);

    private void BindFake()
    {
        Assert.Null(CudaGraphs.Bind(FakePath));
        Log();
    }

    [NeedsCxxFact]
    public void The_shim_is_built_beside_Ddpm_and_says_a_CPU_libtorch_has_no_CUDA_graphs()
    {
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "libddpm_cuda_graph.so")), "libddpm_cuda_graph.so is not in the output");
        var reason = CudaGraphs.UnavailableReason;
        Assert.NotNull(reason);
        Assert.Contains("libtorch_cuda.so is not loaded in this process", reason);
        Assert.Contains("CPU-only libtorch", reason);
        Assert.False(CudaGraphs.IsAvailable);
        Assert.Equal("device is cpu", CudaGraphs.ReasonNotToUse(new Device("cpu")));
        Assert.Equal("opt-in with DDPM_CUDA_GRAPHS=1: not yet verified on a GPU", CudaGraphs.ReasonNotToUse(Cuda));
        // Refused before anything touches CUDA, with the same reason.
        var e = Assert.Throws<CudaGraphException>(() => CudaGraph.Capture(Cuda, () => [zeros(1)]));
        Assert.Equal(reason, e.Message);
    }

    [NeedsCxxFact]
    public void Binding_names_what_is_missing_and_an_unbound_shim_refuses_every_call()
    {
        var notLoaded = CudaGraphs.Bind("libddpm_never_loaded.so");
        Assert.Equal("CUDA graphs unavailable: libddpm_never_loaded.so is not loaded in this process (a CPU-only libtorch has no CUDA graphs)", notLoaded);
        Assert.Contains("not bound", Error(CudaGraphNative.ddpm_cg_create(0, out var graph)));
        Assert.Equal(IntPtr.Zero, graph);
        Assert.Contains("not bound", Error(CudaGraphNative.ddpm_cg_set_stream(IntPtr.Zero, 0)));

        // libc is loaded but has none of libtorch's functions: each one is named.
        var missing = CudaGraphs.Bind("libc.so.6");
        Assert.NotNull(missing);
        Assert.StartsWith("CUDA graphs unavailable: not found in libc.so.6: at::cuda::CUDAGraph::CUDAGraph(bool)", missing);
        foreach (var name in new[] { "capture_begin(MempoolId_t, cudaStreamCaptureMode)", "capture_end()", "replay()",
                     "torch_get_cuda_stream_from_pool", "torch_set_current_cuda_stream", "aoti_torch_get_current_cuda_stream",
                     "torch_cuda_stream_synchronize" })
            Assert.Contains(name, missing);
        Assert.Equal("CUDA graphs unavailable: no libraries named to bind to", CudaGraphs.Bind(""));
    }

    [NeedsCxxFact]
    public void Bound_to_a_fake_libtorch_every_call_arrives_with_its_arguments()
    {
        BindFake();
        Assert.Null(Error(CudaGraphNative.ddpm_cg_create(1, out var graph)));
        Assert.NotEqual(IntPtr.Zero, graph);
        Assert.Equal(0, graph.ToInt64() % 64);
        // The mempool pair travels by value in two registers, the mode in a third: all must arrive intact.
        Assert.Null(Error(CudaGraphNative.ddpm_cg_capture_begin(graph, 7, 9, 1)));
        Assert.Null(Error(CudaGraphNative.ddpm_cg_capture_end(graph)));
        Assert.Null(Error(CudaGraphNative.ddpm_cg_replay(graph)));
        Assert.Null(Error(CudaGraphNative.ddpm_cg_pool_stream(3, 1, out var stream)));
        Assert.Equal(new IntPtr(0x5003), stream);
        Assert.Null(Error(CudaGraphNative.ddpm_cg_set_stream(stream, 3)));
        Assert.Null(Error(CudaGraphNative.ddpm_cg_current_stream(3, out var current)));
        Assert.Equal(IntPtr.Zero, current);
        Assert.Null(Error(CudaGraphNative.ddpm_cg_sync_stream(stream, 3)));
        Assert.Null(Error(CudaGraphNative.ddpm_cg_destroy(graph)));
        Assert.Equal("ctor(1);capture_begin(7,9,1);capture_end;replay;pool_stream(1,3);set_stream(0x5003,3);current_stream(3);" +
            "sync_stream(0x5003,3);dtor;", Log());
        Assert.Null(Error(CudaGraphNative.ddpm_cg_destroy(IntPtr.Zero)));
        Assert.Equal("", Log());
    }

    [NeedsCxxFact]
    public void Every_CPlusPlus_exception_and_error_code_comes_back_as_a_message()
    {
        BindFake();
        Assert.Null(Error(CudaGraphNative.ddpm_cg_create(0, out var graph)));
        try
        {
            foreach (var (function, call) in new (string, Func<IntPtr>)[]
                     {
                         ("capture_begin", () => CudaGraphNative.ddpm_cg_capture_begin(graph, 0, 0, 0)),
                         ("capture_end", () => CudaGraphNative.ddpm_cg_capture_end(graph)),
                         ("replay", () => CudaGraphNative.ddpm_cg_replay(graph)),
                     })
            {
                _fail(function, 1);
                Assert.Equal($"at::cuda::CUDAGraph::{function}: fake {function} failed", Error(call()));
                _fail(function, 2);
                Assert.Equal($"at::cuda::CUDAGraph::{function}: an unknown C++ exception", Error(call()));
            }
            foreach (var (function, name, call) in new (string, string, Func<IntPtr>)[]
                     {
                         ("pool_stream", "torch_get_cuda_stream_from_pool", () => CudaGraphNative.ddpm_cg_pool_stream(0, 0, out _)),
                         ("set_stream", "torch_set_current_cuda_stream", () => CudaGraphNative.ddpm_cg_set_stream(IntPtr.Zero, 0)),
                         ("current_stream", "aoti_torch_get_current_cuda_stream", () => CudaGraphNative.ddpm_cg_current_stream(0, out _)),
                         ("sync_stream", "torch_cuda_stream_synchronize", () => CudaGraphNative.ddpm_cg_sync_stream(IntPtr.Zero, 0)),
                     })
            {
                _fail(function, 3);
                Assert.Equal($"{name}: failed with error code 1 (libtorch printed the reason on stderr)", Error(call()));
                _fail(function, 1);
                Assert.Equal($"{name}: fake {function} failed", Error(call()));
            }
            _fail("", 0);
            Assert.Equal("ddpm_cg_replay: graph is null", Error(CudaGraphNative.ddpm_cg_replay(IntPtr.Zero)));
            Assert.Equal("ddpm_cg_capture_end: graph is null", Error(CudaGraphNative.ddpm_cg_capture_end(IntPtr.Zero)));
            Assert.Equal("ddpm_cg_capture_begin: capture mode must be 0 (global), 1 (thread-local) or 2 (relaxed)",
                Error(CudaGraphNative.ddpm_cg_capture_begin(graph, 0, 0, 3)));
        }
        finally
        {
            _fail("", 0);
            CudaGraphNative.ddpm_cg_destroy(graph);
        }
        // A constructor that throws: no graph, and its memory is not handed out.
        _fail("ctor", 1);
        Assert.Equal("at::cuda::CUDAGraph::CUDAGraph: fake ctor failed", Error(CudaGraphNative.ddpm_cg_create(0, out var none)));
        Assert.Equal(IntPtr.Zero, none);
    }

    [NeedsCxxFact]
    public void A_capture_warms_up_on_a_side_stream_records_once_replays_and_restores_the_stream()
    {
        BindFake();
        int calls = 0;
        int synchronized = 0;
        using var graph = CudaGraph.CaptureWith(Cuda, () => [full(1, (float)++calls)], warmups: 2, CaptureMode.Relaxed, () => synchronized++);
        Assert.Equal(3, calls);
        Assert.Equal(1, synchronized);
        Assert.Equal("current_stream(0);pool_stream(0,0);set_stream(0x5000,0);sync_stream(0x5000,0);ctor(0);capture_begin(0,0,2);" +
            "capture_end;set_stream((nil),0);", Log());
        Assert.Equal(3.0f, graph.Outputs[0].item<float>()); // the captured run's output is kept
        graph.Replay();
        graph.Replay();
        Assert.Equal("replay;replay;", Log());
        graph.Dispose();
        Assert.Equal("dtor;", Log());
        Assert.Throws<ObjectDisposedException>(graph.Replay);
    }

    [NeedsCxxFact]
    public void A_failed_capture_ends_the_capture_frees_the_graph_and_restores_the_stream()
    {
        BindFake();
        int calls = 0;
        var e = Assert.Throws<CudaGraphException>(() => CudaGraph.CaptureWith(Cuda,
            () => ++calls < 3 ? [zeros(1)] : throw new InvalidOperationException("an operation not permitted when stream is capturing"),
            warmups: 2, CaptureMode.Global, () => { }));
        Assert.Equal("capturing failed: an operation not permitted when stream is capturing", e.Message);
        Assert.EndsWith("ctor(0);capture_begin(0,0,0);capture_end;dtor;set_stream((nil),0);", Log());

        _fail("capture_end", 1);
        e = Assert.Throws<CudaGraphException>(() => CudaGraph.CaptureWith(Cuda, () => [zeros(1)], 1, CaptureMode.Global, () => { }));
        Assert.Equal("at::cuda::CUDAGraph::capture_end: fake capture_end failed", e.Message);
        Assert.EndsWith("capture_begin(0,0,0);capture_end;dtor;set_stream((nil),0);", Log());

        // A warm-up that throws: its own exception, no graph built, the stream restored.
        _fail("", 0);
        Assert.Throws<InvalidOperationException>(() => CudaGraph.CaptureWith(Cuda, () => throw new InvalidOperationException("warm-up"),
            1, CaptureMode.Global, () => { }));
        Assert.Equal("current_stream(0);pool_stream(0,0);set_stream(0x5000,0);set_stream((nil),0);", Log());
    }

    /// <summary>
    /// The U-Net forward graphed against the fake: its replay leaves the output of the capture run, which ran on the
    /// first call's inputs. A second call on other inputs is the first replay; it must be caught as wrong.
    /// </summary>
    [NeedsCxxFact]
    public void A_graph_whose_first_replay_disagrees_with_the_eager_forward_is_dropped_with_one_warning_fake_libtorch()
    {
        BindFake();
        using var scope = NewDisposeScope();
        using var model = new UNet(TestModels.Tiny(8));
        model.eval();
        var warnings = new List<string>();
        using var forward = GraphedForward.CreateWith(model, body => CudaGraph.CaptureWith(Cuda, body, 2, CaptureMode.Global, () => { }));
        forward.Warn = warnings.Add;
        var g = new Generator(9);
        var (x1, x2, t) = (randn([2, 1, 8, 8], generator: g), randn([2, 1, 8, 8], generator: g), tensor(new long[] { 3, 7 }));
        Tensor Eager(Tensor x)
        {
            using var noGrad = no_grad();
            return model.forward(x, t);
        }

        Assert.True(forward.Forward(x1, t).eq(Eager(x1)).all().item<bool>(), "the first call of a shape runs eagerly");
        Assert.Equal(1, forward.GraphCount);
        Assert.Contains("ctor(0);capture_begin(0,0,0);capture_end;", Log());
        Assert.True(forward.Forward(x2, t).eq(Eager(x2)).all().item<bool>(), "a disagreeing replay was returned");
        Assert.Equal("replay;dtor;", Log());
        var warning = Assert.Single(warnings);
        Assert.StartsWith("warning: the CUDA graph of the U-Net forward for x 2x1x8x8 disagrees with the eager forward (max |Δ| = ", warning);
        Assert.EndsWith("); running that shape eagerly", warning);
        Assert.Equal((0, 1), (forward.GraphCount, forward.RejectedShapes));
        // That shape stays eager: no capture, no replay, no second warning.
        Assert.True(forward.Forward(x1, t).eq(Eager(x1)).all().item<bool>());
        Assert.Equal("", Log());
        Assert.Single(warnings);
    }

    [NeedsCxxFact]
    public void A_graph_whose_first_replay_agrees_is_replayed_from_then_on_unchecked_fake_libtorch()
    {
        BindFake();
        using var scope = NewDisposeScope();
        using var model = new UNet(TestModels.Tiny(8));
        model.eval();
        var warnings = new List<string>();
        using var forward = GraphedForward.CreateWith(model, body => CudaGraph.CaptureWith(Cuda, body, 2, CaptureMode.Global, () => { }));
        forward.Warn = warnings.Add;
        var g = new Generator(10);
        var (x1, x2, t) = (randn([2, 1, 8, 8], generator: g), randn([2, 1, 8, 8], generator: g), tensor(new long[] { 1, 2 }));
        using var noGrad = no_grad();
        var expected = model.forward(x1, t);

        Assert.True(forward.Forward(x1, t).eq(expected).all().item<bool>());
        Log();
        // The same inputs as the capture's: the fake's stale output is right, so the replay is verified and kept.
        Assert.True(forward.Forward(x1, t).eq(expected).all().item<bool>());
        Assert.Equal("replay;", Log());
        Assert.Equal((1, 0), (forward.GraphCount, forward.RejectedShapes));
        Assert.Empty(warnings);
        // Checked once per shape: later replays are trusted (here the fake's stale output, whatever the inputs).
        Assert.True(forward.Forward(x2, t).eq(expected).all().item<bool>());
        Assert.Equal("replay;", Log());
    }

    private static DdpmConfig StepConfig()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 8, seed: 31);
        return config with { Train = config.Train with { EmaDecay = 0.95, OnNonFinite = NonFiniteAction.Skip } };
    }

    private static GraphedTrainingStep FakeGraphedStep(Trainer trainer) =>
        GraphedTrainingStep.CreateWith(trainer, body => CudaGraph.CaptureWith(Cuda, body, 3, CaptureMode.Global, () => { }));

    /// <summary>
    /// The training step graphed against the fake: its replay changes nothing, so the first replay's step is lost.
    /// The check must catch it, keep the eager step's result, drop the graph and train eagerly from then on: losses
    /// and state equal an eager trainer's.
    /// </summary>
    [NeedsCxxFact]
    public void A_training_step_whose_first_replay_disagrees_is_dropped_and_the_eager_step_stands_fake_libtorch()
    {
        BindFake();
        var config = StepConfig();
        using var data = SyntheticImages.Create(32, 1, 8, seed: 32);
        using var reference = Trainer.Create(config, new Device("cpu"));
        using var graphedTrainer = Trainer.Create(config, new Device("cpu"));
        using var step = FakeGraphedStep(graphedTrainer);
        var warnings = new List<string>();
        step.Warn = warnings.Add;
        Assert.True(step.UsesGraphs);
        for (int i = 0; i < 3; i++)
        {
            using var scope = NewDisposeScope();
            var x0 = data.Batch(arange(i * 8, i * 8 + 8, dtype: int64), new Device("cpu"), null);
            float expected = 0;
            reference.TrainBatch(x0, onStep: r => expected = r.Loss);
            var (loss, applied) = step.Run(x0);
            Assert.True(applied.item<bool>());
            Assert.Equal(expected, loss.item<float>());
            if (i == 0) Assert.EndsWith("capture_begin(0,0,0);capture_end;set_stream((nil),0);replay;dtor;", Log());
            else Assert.Equal("", Log()); // eager: no capture, no replay
        }
        var warning = Assert.Single(warnings);
        Assert.StartsWith("warning: the CUDA graph of the training step disagrees with the eager step (", warning);
        Assert.EndsWith("); training eagerly", warning);
        Assert.Equal("eager (first replay disagreed with the eager step)", step.Description);
        step.WriteBack();
        Assert.Equal(3, graphedTrainer.Flat.Updates);
        GraphedTrainingStepTests.AssertSameState(reference, graphedTrainer);
    }

    /// <summary>
    /// A first replay that agrees: a batch with a NaN and no EMA (whose step count advances even on a skipped step),
    /// so the eager step is skipped and changes nothing — exactly what the fake's replay does. The graph is kept and
    /// later replays are trusted (here the fake's, which change nothing, whatever the batch: the check runs once).
    /// </summary>
    [NeedsCxxFact]
    public void A_training_step_whose_first_replay_agrees_is_kept_and_not_checked_again_fake_libtorch()
    {
        BindFake();
        var config = StepConfig();
        config = config with { Train = config.Train with { EmaDecay = 0 } };
        using var data = SyntheticImages.Create(16, 1, 8, seed: 33);
        using var trainer = Trainer.Create(config, new Device("cpu"));
        using var step = FakeGraphedStep(trainer);
        var warnings = new List<string>();
        step.Warn = warnings.Add;
        var weights = trainer.Flat.Weights.clone();
        using var scope = NewDisposeScope();
        var bad = data.Batch(arange(0, 8, dtype: int64), new Device("cpu"), null);
        bad[0, 0, 0, 0] = float.NaN;
        var (loss, applied) = step.Run(bad);
        Assert.False(applied.item<bool>());
        Assert.True(float.IsNaN(loss.item<float>()));
        Assert.EndsWith("capture_end;set_stream((nil),0);replay;", Log());
        Assert.Empty(warnings);
        Assert.Equal("CUDA graphs", step.Description);
        step.Run(data.Batch(arange(8, 16, dtype: int64), new Device("cpu"), null));
        Assert.Equal("replay;", Log());
        Assert.Empty(warnings);
        Assert.True(weights.eq(trainer.Flat.Weights).all().item<bool>(), "the fake's replay changed the weights");
    }

    [Fact]
    public void CUDA_graphs_are_off_unless_DDPM_CUDA_GRAPHS_is_1_and_other_values_are_refused()
    {
        var before = Environment.GetEnvironmentVariable(CudaGraphs.Variable);
        try
        {
            Environment.SetEnvironmentVariable(CudaGraphs.Variable, null);
            Assert.Equal("opt-in with DDPM_CUDA_GRAPHS=1: not yet verified on a GPU", CudaGraphs.ReasonNotToUse(Cuda));
            Environment.SetEnvironmentVariable(CudaGraphs.Variable, "1");
            Assert.Equal(CudaGraphs.UnavailableReason, CudaGraphs.ReasonNotToUse(Cuda)); // wanted; the CPU libtorch has none
            Environment.SetEnvironmentVariable(CudaGraphs.Variable, "0");
            Assert.Equal("DDPM_CUDA_GRAPHS=0", CudaGraphs.ReasonNotToUse(Cuda));
            Assert.Equal("device is cpu", CudaGraphs.ReasonNotToUse(new Device("cpu")));
            Environment.SetEnvironmentVariable(CudaGraphs.Variable, "yes");
            var e = Assert.Throws<ArgumentException>(() => CudaGraphs.ReasonNotToUse(Cuda));
            Assert.Equal("DDPM_CUDA_GRAPHS: expected 0 or 1, got 'yes'", e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(CudaGraphs.Variable, before);
        }
    }
}
