using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Tests.Data;
using Ddpm.Training;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Tests.Interop;

/// <summary>
/// Our U-Net and our weight files checked by a real PyTorch (Debian's python3-torch or any other; see
/// <see cref="RealPyTorch"/>), running the reference architecture of <c>scripts/pytorch_baseline.py</c> with the
/// reference's state_dict keys. Outputs must agree to a relative L2 error of 1e-5.
/// </summary>
[Collection(GlobalRngCollection.Name)] // trains and exports through the CLI in-process
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class PyTorchCrossFrameworkTests(PyTorchCrossFrameworkTests.TrainedCheckpoint trained)
    : IClassFixture<PyTorchCrossFrameworkTests.TrainedCheckpoint>, IDisposable
{
    private const double Tolerance = 1e-5;
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>
    /// The reference's config keys for a U-Net: more layers per block than the fixtures, three channels, a
    /// down-sampling pattern other than the default, different layer counts per block kind.
    /// </summary>
    private const string WideYaml = """
        model_params:
          im_channels: 3
          im_size: 16
          down_channels: [16, 32, 32, 32]
          mid_channels: [32, 32, 32]
          down_sample: [True, False, True]
          time_emb_dim: 32
          num_down_layers: 2
          num_mid_layers: 2
          num_up_layers: 1
          num_heads: 4
        """;

    [PyTorchFact]
    public void A_state_dict_saved_by_pytorch_loads_into_our_unet_and_gives_pytorchs_output()
    {
        var config = DdpmConfig.Parse(WideYaml);
        RealPyTorch.Run(_tmp.Path, """
            import json, os, torch
            from make_pytorch_fixtures import seeded_unet, save_safetensors
            mp, out = json.loads(sys.argv[1]), sys.argv[2]
            model = seeded_unet(mp, seed=3)
            torch.save(model.state_dict(), os.path.join(out, "weights.pth"))
            x = torch.randn(3, mp["im_channels"], mp["im_size"], mp["im_size"], generator=torch.Generator().manual_seed(5))
            t = torch.tensor([0, 421, 999])
            with torch.no_grad():
                eps = model(x, t)
            save_safetensors({"x": x, "t": t, "eps": eps}, os.path.join(out, "io.safetensors"))
            """, ModelParamsJson(config.Model), _tmp.Path);

        // Through the same path as `ddpm import` / `ddpm sample`: pickle check, strict all-or-nothing load.
        using var loaded = ModelFile.Load(_tmp.File("weights.pth"), config);
        Assert.Equal(WeightFormat.PyTorch, loaded.Format);
        Assert.Empty(loaded.MissingKeys);
        var io = Safetensors.LoadStateDict(_tmp.File("io.safetensors"));
        AssertSameOutput("PyTorch's weights in our U-Net", Forward(loaded.Model, io["x"], io["t"]), io["eps"]);
    }

    [PyTorchFact]
    public void Exported_pth_files_of_a_checkpoint_we_trained_load_strictly_in_pytorch_and_give_our_outputs()
    {
        var raw = _tmp.File("model.pth");
        var ema = _tmp.File("ema.pth");
        Assert.Equal(0, TinyCli.Run("export", "--checkpoint", trained.Path, "--to", raw));
        Assert.Equal(0, TinyCli.Run("export", "--checkpoint", trained.Path, "--to", ema, "--ema"));
        var io = EvaluateInPyTorch(raw, ema);

        using var ours = ModelFile.Load(trained.Path);
        var oursRaw = Forward(ours.Model, io["x"], io["t"]);
        Checkpoint.LoadEmaInto(trained.Path, ours.Model);
        var oursEma = Forward(ours.Model, io["x"], io["t"]);
        AssertSameOutput("ddpm export", oursRaw, io["eps0"]);
        AssertSameOutput("ddpm export --ema", oursEma, io["eps1"]);
        // The two exports are different weights, so the comparison above tells them apart.
        double apart = RelativeL2(oursEma, oursRaw);
        Assert.True(apart > 100 * Tolerance, $"the EMA and raw outputs differ by only {apart:E3}: --ema exported the raw weights?");
    }

    [PyTorchFact]
    public void An_exported_safetensors_file_reads_back_in_pytorch_and_gives_our_output()
    {
        var file = _tmp.File("model.safetensors");
        Assert.Equal(0, TinyCli.Run("export", "--checkpoint", trained.Path, "--to", file));
        var io = EvaluateInPyTorch(file);
        using var ours = ModelFile.Load(trained.Path);
        AssertSameOutput("ddpm export (safetensors)", Forward(ours.Model, io["x"], io["t"]), io["eps0"]);
    }

    [PyTorchFact]
    public void The_fixture_script_remakes_the_committed_fixtures()
    {
        var stdout = RealPyTorch.Run(_tmp.Path, """
            import make_pytorch_fixtures
            sys.argv = ["make_pytorch_fixtures.py", sys.argv[1]]
            make_pytorch_fixtures.main()
            """, _tmp.Path);
        Assert.Contains("186 tensors, 276,193 parameters", stdout);
        foreach (var file in new[] { "small_unet.pth", "small_unet.safetensors" })
        {
            var committed = StateDictIo.Read(TestPaths.Fixture(file));
            var remade = StateDictIo.Read(_tmp.File(file));
            Assert.Equal(committed.Keys.Order(StringComparer.Ordinal), remade.Keys.Order(StringComparer.Ordinal));
            foreach (var (key, t) in committed)
                Assert.True(t.bytes.SequenceEqual(remade[key].bytes), $"{file}: {key} differs from the committed fixture");
        }
        var io = Safetensors.LoadStateDict(TestPaths.Fixture("small_unet_io.safetensors"));
        var again = Safetensors.LoadStateDict(_tmp.File("small_unet_io.safetensors"));
        Assert.True(io["x"].bytes.SequenceEqual(again["x"].bytes), "x differs");
        Assert.True(io["t"].bytes.SequenceEqual(again["t"].bytes), "t differs");
        // Another PyTorch build may sum in another order: the outputs are compared, not their bytes.
        AssertSameOutput("the remade float32 outputs", again["eps"], io["eps"]);
        double exact = (again["eps64"] - io["eps64"]).abs().max().item<double>() / io["eps64"].abs().max().item<double>();
        Assert.True(exact <= 1e-7, $"the remade float64 outputs differ by {exact:E3} (max, relative)");
    }

    /// <summary>
    /// PyTorch loads each file (<c>torch.load(weights_only=True)</c> for .pth; safetensors by the module or by hand)
    /// into the reference U-Net with <c>load_state_dict(strict=True)</c> and returns x, t and eps0, eps1, … for them.
    /// </summary>
    private Dictionary<string, Tensor> EvaluateInPyTorch(params string[] files)
    {
        var io = _tmp.File("io.safetensors");
        RealPyTorch.Run(_tmp.Path, """
            import json, torch
            from make_pytorch_fixtures import unet_from_config, load_safetensors, save_safetensors
            mp, out, files = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
            x = torch.randn(3, mp["im_channels"], mp["im_size"], mp["im_size"], generator=torch.Generator().manual_seed(7))
            t = torch.tensor([0, 9, 19])  # T = 20 in the tiny config: first, middle, last
            result = {"x": x, "t": t}
            for i, f in enumerate(files):
                sd = load_safetensors(f) if f.endswith(".safetensors") else torch.load(f, weights_only=True)
                bad = [k for k, v in sd.items() if v.dtype != torch.float32]
                assert not bad, f"{f}: not float32: {bad}"
                model = unet_from_config(mp)
                model.load_state_dict(sd, strict=True)  # raises on any missing, unexpected or mis-shaped key
                with torch.no_grad():
                    result[f"eps{i}"] = model.eval()(x, t)
            save_safetensors(result, out)
            """, [ModelParamsJson(trained.Config.Model), io, .. files]);
        return Safetensors.LoadStateDict(io);
    }

    private static Tensor Forward(UNet model, Tensor x, Tensor t)
    {
        model.eval();
        using var _ = no_grad();
        return model.forward(x, t);
    }

    private static double RelativeL2(Tensor actual, Tensor expected) =>
        ((actual.to(float64) - expected.to(float64)).norm() / expected.to(float64).norm()).item<double>();

    private static void AssertSameOutput(string what, Tensor ours, Tensor pytorch)
    {
        Assert.Equal(pytorch.shape, ours.shape);
        Assert.True(pytorch.abs().max().item<float>() > 0.01, $"{what}: PyTorch's output is degenerate");
        double rel = RelativeL2(ours, pytorch);
        Assert.True(rel <= Tolerance, $"{what}: ‖ε_ours − ε_PyTorch‖ / ‖ε_PyTorch‖ = {rel:E3} > {Tolerance}");
    }

    /// <summary>The reference's <c>model_params</c> as JSON for <c>unet_from_config</c>.</summary>
    private static string ModelParamsJson(UNetOptions o) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["im_channels"] = o.ImChannels, ["im_size"] = o.ImSize, ["down_channels"] = o.DownChannels,
        ["mid_channels"] = o.MidChannels, ["down_sample"] = o.DownSample, ["time_emb_dim"] = o.TimeEmbDim,
        ["num_down_layers"] = o.NumDownLayers, ["num_mid_layers"] = o.NumMidLayers, ["num_up_layers"] = o.NumUpLayers,
        ["num_heads"] = o.NumHeads,
    });

    /// <summary>A checkpoint of the tiny CLI config trained by <c>ddpm train</c> for 5 steps with an EMA (on first
    /// use).</summary>
    public sealed class TrainedCheckpoint : IDisposable
    {
        private readonly TempFolder _dir = new();
        private readonly Lazy<string> _path;

        public TrainedCheckpoint() => _path = new Lazy<string>(Train);

        public string Path => _path.Value;
        public DdpmConfig Config { get; } = DdpmConfig.Parse(TinyCli.Yaml(extraTrain: "  ema_decay: 0.9\n"));

        private string Train()
        {
            var config = _dir.File("tiny.yaml");
            File.WriteAllText(config, TinyCli.Yaml(extraTrain: "  ema_decay: 0.9\n"));
            var run = _dir.File("run");
            Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "5", "--device", "cpu"));
            return System.IO.Path.Combine(run, "checkpoint.ckpt");
        }

        public void Dispose() => _dir.Dispose();
    }
}
