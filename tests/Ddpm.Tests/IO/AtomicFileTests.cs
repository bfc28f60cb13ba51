using Ddpm.IO;

namespace Ddpm.Tests.IO;

public class AtomicFileTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("atomic");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Leftovers() => Directory.GetFiles(_dir, "*" + AtomicFile.TempMarker + "*", SearchOption.AllDirectories);

    [Fact]
    public void A_write_creates_the_folder_and_replaces_an_existing_file_whole()
    {
        var path = Path.Combine(_dir, "sub", "report.json");
        AtomicFile.WriteAllText(path, "first, and longer than the second");
        Assert.Equal("first, and longer than the second", File.ReadAllText(path));
        AtomicFile.WriteAllText(path, "second ü");
        Assert.Equal("second ü", File.ReadAllText(path));
        Assert.Equal([0x73, 0x65], File.ReadAllBytes(path)[..2]); // no byte-order mark
        Assert.Empty(Leftovers());
    }

    [Fact]
    public void A_write_that_fails_midway_leaves_the_previous_file_and_no_temporary_file()
    {
        var path = Path.Combine(_dir, "weights.bin");
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[1000]);
            throw new IOException("disk full (simulated)");
        }));
        Assert.Contains("simulated", e.Message);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Empty(Leftovers());

        var fresh = Path.Combine(_dir, "never.bin");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(fresh, _ => throw new InvalidOperationException()));
        Assert.False(File.Exists(fresh));
        Assert.Empty(Leftovers());
    }

    [Fact]
    public void Replace_renames_what_the_callback_made_at_the_temporary_path()
    {
        var path = Path.Combine(_dir, "latest.ckpt");
        var source = Path.Combine(_dir, "numbered.ckpt");
        File.WriteAllText(source, "checkpoint");
        string? seen = null;
        AtomicFile.Replace(path, temp =>
        {
            seen = temp;
            File.Copy(source, temp);
        });
        Assert.Equal(Path.GetFullPath(path) + AtomicFile.TempMarker + Environment.ProcessId, seen);
        Assert.Equal("checkpoint", File.ReadAllText(path));
        Assert.Empty(Leftovers());
    }
}
