using System.IO.Compression;
using System.Text;
using Ddpm.Interop;
using Ddpm.Tests.Data;
using Xunit;

namespace Ddpm.Tests.Interop;

/// <summary>A .pth is a pickle: anything but tensors and plain containers is refused before unpickling.</summary>
public sealed class UnsafePickleTests : IDisposable
{
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>A zip shaped like torch.save's output whose archive/data.pkl holds <paramref name="pickle"/>.</summary>
    private string CraftedPth(byte[] pickle)
    {
        var path = _tmp.File("evil.pth");
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        using (var s = zip.CreateEntry("archive/data.pkl").Open()) s.Write(pickle);
        using (var s = zip.CreateEntry("archive/byteorder").Open()) s.Write("little"u8);
        return path;
    }

    /// <summary>Protocol 2: GLOBAL 'module\nname\n', BINUNICODE argument, TUPLE1, REDUCE, STOP.</summary>
    private static byte[] CallGlobal(string module, string name, string argument)
    {
        var ms = new MemoryStream();
        ms.Write([0x80, 0x02]);                                    // PROTO 2
        ms.WriteByte((byte)'c');                                   // GLOBAL
        ms.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
        var arg = Encoding.UTF8.GetBytes(argument);
        ms.WriteByte((byte)'X');                                   // BINUNICODE
        ms.Write(BitConverter.GetBytes(arg.Length));
        ms.Write(arg);
        ms.WriteByte(0x85);                                        // TUPLE1
        ms.WriteByte((byte)'R');                                   // REDUCE
        ms.WriteByte((byte)'.');                                   // STOP
        return ms.ToArray();
    }

    [Theory]
    [InlineData("os", "system", "touch pwned")]
    [InlineData("builtins", "eval", "__import__('os').system('touch pwned')")]
    [InlineData("subprocess", "Popen", "touch pwned")]
    public void A_pickle_calling_a_foreign_global_is_refused_by_name(string module, string name, string argument)
    {
        var path = CraftedPth(CallGlobal(module, name, argument));
        Assert.Equal(WeightFormat.PyTorch, StateDictIo.Detect(path));
        var e = Assert.Throws<WeightsException>(() => StateDictIo.Read(path));
        Assert.Contains("refused to unpickle", e.Message);
        Assert.Contains($"{module}.{name}", e.Message);
        var viaModel = Assert.Throws<WeightsException>(() => ModelFile.Load(path, Fixtures.Config));
        Assert.Contains($"{module}.{name}", viaModel.Message);
    }

    [Fact]
    public void A_protocol_4_stack_global_is_resolved_and_refused()
    {
        var ms = new MemoryStream();
        ms.Write([0x80, 0x04]);
        foreach (var s in new[] { "builtins", "eval" })
        {
            ms.WriteByte(0x8c);                                    // SHORT_BINUNICODE
            ms.WriteByte((byte)s.Length);
            ms.Write(Encoding.ASCII.GetBytes(s));
            ms.WriteByte(0x94);                                    // MEMOIZE
        }
        ms.WriteByte(0x93);                                        // STACK_GLOBAL
        ms.Write([0x8c, 1, (byte)'1', 0x85, (byte)'R', (byte)'.']);
        var e = Assert.Throws<WeightsException>(() => StateDictIo.Read(CraftedPth(ms.ToArray())));
        Assert.Contains("builtins.eval", e.Message);
    }

    [Fact]
    public void Object_building_opcodes_are_refused_even_without_a_global()
    {
        // INST 'os\nsystem\n' builds an instance directly from a MARK-ed argument list.
        byte[] pickle = [0x80, 0x02, (byte)'(', .. Encoding.ASCII.GetBytes("ios\nsystem\n"), (byte)'.'];
        var e = Assert.Throws<WeightsException>(() => StateDictIo.Read(CraftedPth(pickle)));
        Assert.Contains("os.system", e.Message);
    }

    [Fact]
    public void A_truncated_pickle_is_refused_not_half_read()
    {
        var bytes = CallGlobal("collections", "OrderedDict", "x");
        var e = Assert.Throws<WeightsException>(() => StateDictIo.Read(CraftedPth(bytes[..^1])));
        Assert.Contains("truncated", e.Message);
    }
}
