using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Tests.Data;
using Ddpm.Training;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Interop;

/// <summary>Export → import is bit-exact, and what is exported is exactly what PyTorch's strict load_state_dict
/// wants.</summary>
public sealed class RoundTripTests : IDisposable
{
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Theory]
    [InlineData("model.pth")]
    [InlineData("model.safetensors")]
    public void Export_then_import_is_bit_exact(string file)
    {
        using var source = ModelFile.Load(Fixtures.Pth, Fixtures.Config);
        var ckpt = _tmp.File("source.ckpt");
        Checkpoint.Save(ckpt, source.Model, source.Config, epoch: 3, step: 42);

        var exported = _tmp.File(file);
        using (var fromCkpt = ModelFile.Load(ckpt)) ModelFile.Export(fromCkpt.Model, exported);
        var imported = _tmp.File("imported.ckpt");
        ModelFile.Import(exported, Fixtures.Config, imported);

        using var back = ModelFile.Load(imported);
        Assert.Equal(WeightFormat.Checkpoint, back.Format);
        Assert.Equal(Fixtures.Config.Model.DownChannels, back.Config.Model.DownChannels);
        var expected = source.Model.state_dict();
        var actual = back.Model.state_dict();
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (key, t) in expected)
            Assert.True(t.bytes.SequenceEqual(actual[key].bytes), $"{key} differs after the round trip");
    }

    [Theory]
    [InlineData("model.pth")]
    [InlineData("model.safetensors")]
    public void Exported_keys_shapes_and_dtypes_equal_the_reference_state_dict(string file)
    {
        // The reference's own state_dict is what Unet(config).load_state_dict(..., strict=True) accepts.
        var reference = StateDictIo.Read(Fixtures.Pth);
        using var model = new UNet(Fixtures.Config.Model);
        var exported = _tmp.File(file);
        ModelFile.Export(model, exported);
        var written = StateDictIo.Read(exported);
        try
        {
            Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), written.Keys.Order(StringComparer.Ordinal));
            foreach (var (key, t) in reference)
            {
                Assert.Equal(t.shape, written[key].shape);
                Assert.Equal(ScalarType.Float32, written[key].dtype);
                Assert.False(written[key].requires_grad, key);
            }
        }
        finally
        {
            foreach (var t in reference.Values.Concat(written.Values)) t.Dispose();
        }
    }

    [Fact]
    public void An_exported_pth_uses_only_the_globals_torch_load_weights_only_allows()
    {
        using var model = new UNet(Fixtures.Config.Model);
        var exported = _tmp.File("model.pth");
        ModelFile.Export(model, exported);
        // The same allow-list check that guards imports: torch._utils._rebuild_tensor_v2, torch.FloatStorage,
        // collections.OrderedDict, all of which torch.load(weights_only=True) accepts.
        Assert.Equal(WeightFormat.PyTorch, StateDictIo.Detect(exported));
        var read = StateDictIo.Read(exported);
        Assert.Equal(186, read.Count);
        foreach (var t in read.Values) t.Dispose();
    }

    [Fact]
    public void Import_refuses_a_ddpm_checkpoint()
    {
        using var model = new UNet(Fixtures.Config.Model);
        var ckpt = _tmp.File("a.ckpt");
        Checkpoint.Save(ckpt, model, Fixtures.Config, 0, 0);
        var e = Assert.Throws<RequestException>(() => ModelFile.Import(ckpt, Fixtures.Config, _tmp.File("b.ckpt")));
        Assert.Contains("already a ddpm checkpoint", e.Message);
    }
}
