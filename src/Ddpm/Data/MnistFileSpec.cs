namespace Ddpm.Data;

/// <summary>
/// One of the four MNIST files: its name without <c>.gz</c>, the MD5 of the published <c>.gz</c>, and the MD5 and
/// length of the uncompressed file that is kept on disk.
/// </summary>
public sealed record MnistFileSpec(string Name, string GzMd5, string Md5, long Length)
{
    /// <summary>LeCun's originals: .gz MD5s as published by torchvision, uncompressed MD5s/lengths of the same
    /// files.</summary>
    public static IReadOnlyList<MnistFileSpec> Originals { get; } =
    [
        new("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb", 47_040_016),
        new("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", 60_008),
        new("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", 7_840_016),
        new("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", 10_008),
    ];
}
