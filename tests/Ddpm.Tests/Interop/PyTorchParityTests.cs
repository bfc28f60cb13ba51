using Ddpm.Interop;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Interop;

/// <summary>The reference's own weights, loaded from either file, reproduce the reference's ε_θ(x, t).</summary>
public sealed class PyTorchParityTests
{
    [Theory]
    [InlineData("small_unet.pth", WeightFormat.PyTorch)]
    [InlineData("small_unet.safetensors", WeightFormat.Safetensors)]
    public void Reference_weights_reproduce_the_reference_eps(string file, WeightFormat expected)
    {
        var path = TestPaths.Fixture(file);
        Assert.Equal(expected, StateDictIo.Detect(path));
        using var loaded = ModelFile.Load(path, Fixtures.Config);
        Assert.Equal(276_193, loaded.Model.ParameterCount());
        Assert.Empty(loaded.MissingKeys);
        loaded.Model.eval();

        var io = Safetensors.LoadStateDict(Fixtures.Io);
        try
        {
            using var _ = no_grad();
            using var eps = loaded.Model.forward(io["x"], io["t"]);
            var reference = io["eps"];
            Assert.Equal(reference.shape, eps.shape);
            double maxRel = (eps - reference).abs().max().item<float>() / reference.abs().max().item<float>();
            Assert.True(maxRel < 1e-5, $"max |ε - ε_ref| / max |ε_ref| = {maxRel:G3}");
        }
        finally
        {
            foreach (var t in io.Values) t.Dispose();
        }
    }

    [Fact]
    public void Both_fixture_files_hold_the_same_186_float32_tensors()
    {
        var pth = StateDictIo.Read(Fixtures.Pth);
        var st = StateDictIo.Read(Fixtures.Safetensors);
        Assert.Equal(186, pth.Count);
        Assert.Equal(pth.Keys.Order(), st.Keys.Order());
        foreach (var (key, t) in pth)
        {
            Assert.Equal(ScalarType.Float32, t.dtype);
            Assert.True(t.bytes.SequenceEqual(st[key].bytes), key);
        }
    }
}
