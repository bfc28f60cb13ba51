using System.IO.Compression;

namespace Ddpm.Onnx;

/// <summary>Image grids as 8-bit PNG (grayscale for 1 channel, RGB for 3): the layout of the TorchSharp library's
/// ImageGrid.</summary>
public static class PngGrid
{
    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>
    /// Lays out <paramref name="count"/> images of bytes [N, C, H, W] <paramref name="perRow"/> to a row with
    /// <paramref name="padding"/> black pixels around each, and encodes the grid (PNG spec: IHDR, one IDAT, IEND).
    /// </summary>
    public static byte[] Encode(ReadOnlySpan<byte> images, int count, int channels, int height, int width, int perRow, int padding = 2)
    {
        if (channels is not (1 or 3)) throw new ArgumentException($"images must have 1 or 3 channels, got {channels}");
        if (perRow < 1) throw new ArgumentOutOfRangeException(nameof(perRow), "at least one image per row");
        if (images.Length != count * channels * height * width)
            throw new ArgumentException($"{images.Length} bytes are not {count} images of {channels}×{height}×{width}");
        int cols = Math.Min(perRow, count), rows = (count + cols - 1) / cols;
        int gridW = cols * (width + padding) + padding, gridH = rows * (height + padding) + padding;
        var raw = new byte[gridH * (1 + gridW * channels)]; // each scanline: filter type 0, then the pixels
        for (int n = 0; n < count; n++)
        {
            int x0 = padding + n % cols * (width + padding), y0 = padding + n / cols * (height + padding);
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                        raw[(y0 + y) * (1 + gridW * channels) + 1 + (x0 + x) * channels + c] = images[((n * channels + c) * height + y) * width + x];
        }
        using var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        WriteBigEndian(header, 0, (uint)gridW);
        WriteBigEndian(header, 4, (uint)gridH);
        header[8] = 8;                               // bit depth
        header[9] = (byte)(channels == 1 ? 0 : 2);   // colour type: grayscale or RGB
        Chunk(png, "IHDR", header);
        using (var compressed = new MemoryStream())
        {
            using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);
            Chunk(png, "IDAT", compressed.ToArray());
        }
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    private static void Chunk(Stream png, string type, byte[] data)
    {
        var head = new byte[8];
        WriteBigEndian(head, 0, (uint)data.Length);
        for (int i = 0; i < 4; i++) head[4 + i] = (byte)type[i];
        png.Write(head);
        png.Write(data);
        uint crc = Crc(Crc(0xFFFFFFFFu, head.AsSpan(4)), data) ^ 0xFFFFFFFFu;
        var tail = new byte[4];
        WriteBigEndian(tail, 0, crc);
        png.Write(tail);
    }

    private static void WriteBigEndian(byte[] buffer, int offset, uint value)
    {
        buffer[offset] = (byte)(value >> 24);
        buffer[offset + 1] = (byte)(value >> 16);
        buffer[offset + 2] = (byte)(value >> 8);
        buffer[offset + 3] = (byte)value;
    }

    /// <summary>CRC-32 (polynomial 0xEDB88320, reflected) as the PNG spec defines it, continued from <paramref
    /// name="crc"/>.</summary>
    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (var b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
