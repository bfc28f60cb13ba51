using Ddpm.IO;
using Ddpm.Tests.Data;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.IO;

/// <summary>
/// Reads that must never block: a FIFO or device in place of a file is refused before it is opened (issue 25).
/// </summary>
public sealed class RegularFileTests : IDisposable
{
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public async Task A_fifo_is_refused_at_once_and_named_as_one()
    {
        var fifo = Fifo.Make(_tmp.File("checkpoint.ckpt"));
        try
        {
            Assert.False(RegularFile.Is(fifo));
            Assert.Equal("a FIFO (named pipe)", RegularFile.SpecialKind(fifo));
            var open = Task.Run(() => RegularFile.OpenRead(fifo));
            Assert.True(await Task.WhenAny(open, Task.Delay(TimeSpan.FromSeconds(20))) == open, "opening a FIFO blocked");
            var e = Assert.IsType<IOException>(open.Exception!.InnerException);
            Assert.Contains("is a FIFO (named pipe), not a regular file", e.Message);
            Assert.Contains(fifo, e.Message);
            // A run folder's checks skip it too.
            Assert.Empty(Ddpm.Runs.CheckpointFolder.Files(_tmp.Path));
            Assert.False(Ddpm.Runs.RunFolder.LooksLikeRun(_tmp.Path));
        }
        finally { Fifo.Release(fifo); }
    }

    [Fact]
    public void Regular_files_read_as_usual_and_other_kinds_fail_as_the_file_system_says()
    {
        var file = _tmp.File("loss.csv");
        File.WriteAllText(file, "step,loss\n1,0.5\n");
        Assert.True(RegularFile.Is(file));
        Assert.Null(RegularFile.SpecialKind(file));
        using (var s = RegularFile.OpenRead(file))
        using (var r = new StreamReader(s))
            Assert.Equal("step,loss\n1,0.5\n", r.ReadToEnd());
        // Opened for reading, it still lets a writer append and a pruner delete (as FileShare.ReadWrite | Delete).
        using (var s = RegularFile.OpenRead(file))
        {
            File.AppendAllText(file, "2,0.4\n");
            File.Delete(file);
            Assert.Equal(22, new StreamReader(s).ReadToEnd().Length);
        }
        Assert.Throws<FileNotFoundException>(() => RegularFile.OpenRead(file));
        Assert.False(RegularFile.Is(file));
        Assert.Throws<UnauthorizedAccessException>(() => RegularFile.OpenRead(_tmp.Path));
        Assert.Equal("a character device", RegularFile.SpecialKind("/dev/null"));
        Assert.Contains("a character device", Assert.Throws<IOException>(() => RegularFile.OpenRead("/dev/null")).Message);
        // Through a symbolic link, the target's kind counts.
        var link = _tmp.File("link.csv");
        File.CreateSymbolicLink(link, "/dev/zero");
        Assert.False(RegularFile.Is(link));
    }

    [Fact]
    public async Task Every_path_check_names_a_fifo_instead_of_waiting_on_it()
    {
        var fifo = Fifo.Make(_tmp.File("config.yaml"));
        try
        {
            Assert.Equal("is a FIFO (named pipe), not a regular file", PathCheck.FileProblem(fifo));
            var load = Task.Run(() => Ddpm.Configuration.DdpmConfig.Load(fifo));
            Assert.True(await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(20))) == load, "loading a FIFO config blocked");
            Assert.Contains("is a FIFO", load.Exception!.InnerException!.Message);
        }
        finally { Fifo.Release(fifo); }
    }
}
