using Ddpm.Runs;
using System.Buffers.Binary;
using System.Globalization;
using Ddpm.Logging;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Server;

/// <summary>
/// TensorBoard event files, read back the way TensorBoard reads them: records of (length, masked CRC-32C of the length,
/// data, masked CRC-32C of the data), each data an <c>Event</c> protocol buffer. The CRC here is computed independently
/// of the writer (bitwise, Castagnoli polynomial).
/// </summary>
public sealed class TensorBoardTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("tensorboard");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static List<Tensorboard.Event> ReadEvents(string file)
    {
        var bytes = File.ReadAllBytes(file);
        var events = new List<Tensorboard.Event>();
        int p = 0;
        while (p < bytes.Length)
        {
            Assert.True(p + 12 <= bytes.Length, $"truncated record header at byte {p}");
            var length = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(p));
            Assert.Equal(MaskedCrc(bytes.AsSpan(p, 8)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(p + 8)));
            var data = bytes.AsSpan(p + 12, checked((int)length));
            Assert.Equal(MaskedCrc(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(p + 12 + (int)length)));
            events.Add(Tensorboard.Event.Parser.ParseFrom(data.ToArray())); // TorchSharp's generated code parses arrays, not spans
            p += 12 + (int)length + 4;
        }
        return events;
    }

    /// <summary>TFRecord's checksum: CRC-32C rotated right by 15 bits plus 0xa282ead8.</summary>
    private static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        crc = ~crc;
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    [Fact]
    public void The_crc_is_crc32c() =>
        Assert.Equal(0xE3069283u, ((MaskedCrc("123456789"u8) - 0xa282ead8u) is var r ? (r << 15) | (r >> 17) : 0));

    internal static IEnumerable<(long Step, string Tag, Tensorboard.Summary.Types.Value Value, double WallTime)> Values(IEnumerable<Tensorboard.Event> events) =>
        events.Where(e => e.Summary is not null).SelectMany(e => e.Summary.Value.Select(v => (e.Step, v.Tag, v, e.WallTime)));

    [Fact]
    public void Steps_epochs_and_images_are_written_as_valid_records_TensorBoard_can_read()
    {
        var log = new TensorBoardLog(_dir);
        log.Step(new StepReport(1, 7, 7, 64, 0.5f, 123.5), 2e-4);
        log.Step(new StepReport(1, 8, 8, 64, 0.25f, 125), 2e-4);
        log.Epoch(new EpochReport(1, 8, 8, 0.375, 1.5, 124, 0, 0, false));
        var png = Path.Combine(_dir, "grid.png");
        using (var images = linspace(-1, 1, 4 * 8 * 8).reshape(4, 1, 8, 8)) Ddpm.Imaging.ImageGrid.SavePng(images, 2, png);
        log.Image("samples", png, 8);

        var file = Assert.Single(Directory.GetFiles(_dir, "events.out.tfevents.*"));
        var events = ReadEvents(file);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        var values = Values(events).ToList();
        var scalars = values.Where(v => v.Value.ValueCase == Tensorboard.Summary.Types.Value.ValueOneofCase.SimpleValue)
            .Select(v => (v.Step, v.Tag, Value: Math.Round(v.Value.SimpleValue, 6))).ToList();
        Assert.Equal(
        [
            (7L, "train/loss", 0.5), (7L, "train/lr", 0.0002), (7L, "train/images_per_s", 123.5),
            (8L, "train/loss", 0.25), (8L, "train/lr", 0.0002), (8L, "train/images_per_s", 125.0),
            (8L, "epoch/mean_loss", 0.375), (8L, "epoch/images_per_s", 124.0),
        ], scalars);
        // Wall times of the summaries are Unix seconds (TensorBoard's relative and wall-clock axes).
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        Assert.All(values, v => Assert.InRange(v.WallTime, now - 3600, now + 60));

        var image = Assert.Single(values, v => v.Tag == "samples");
        Assert.Equal(8, image.Step);
        var written = ServerClient.Decode(image.Value.Image.EncodedImageString.ToByteArray());
        Assert.Equal((image.Value.Image.Width, image.Value.Image.Height), (written.Width, written.Height));
        Assert.Equal((22, 22), (written.Width, written.Height));
    }

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public void Ddpm_train_logs_every_step_of_loss_csv_and_a_preview_grid_per_epoch()
    {
        var runs = ServerRuns.Shared;
        var file = Assert.Single(Directory.GetFiles(runs.Cond, "events.out.tfevents.*"));
        var values = Values(ReadEvents(file)).ToList();
        var losses = values.Where(v => v.Tag == "train/loss").Select(v => (v.Step, (double)v.Value.SimpleValue)).ToList();
        var csv = File.ReadAllLines(Path.Combine(runs.Cond, "loss.csv")).Skip(1)
            .Select(l => l.Split(',')).Select(f => (long.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1], CultureInfo.InvariantCulture))).ToList();
        Assert.Equal(ServerRuns.TrainSteps, csv.Count);
        Assert.Equal(csv.Select(c => c.Item1), losses.Select(l => l.Step));
        Assert.All(csv.Zip(losses), p => Assert.Equal(p.First.Item2, p.Second.Item2, 5e-6 * Math.Max(1, p.First.Item2)));
        Assert.Equal(ServerRuns.TrainSteps, values.Count(v => v.Tag == "train/images_per_s" && v.Value.SimpleValue > 0));
        Assert.Equal(0.001, Assert.Single(values.Where(v => v.Tag == "train/lr").Select(v => Math.Round(v.Value.SimpleValue, 6)).Distinct()));
        Assert.Single(values, v => v.Tag == "epoch/mean_loss" && v.Step == ServerRuns.TrainSteps);

        // One preview per epoch: the grid file the runs page shows, and the same picture in TensorBoard.
        var preview = ServerClient.Decode(File.ReadAllBytes(Path.Combine(runs.Cond, RunFolder.PreviewFile)));
        int side = ServerClient.GridSide(4, ServerRuns.ImageSize);
        Assert.Equal((side, side), (preview.Width, preview.Height));
        var image = Assert.Single(values, v => v.Tag == "samples");
        Assert.Equal(ServerRuns.TrainSteps, image.Step);
        var logged = ServerClient.Decode(image.Value.Image.EncodedImageString.ToByteArray());
        Assert.Equal((side, side), (logged.Width, logged.Height));
    }
}
