namespace Ddpm.Data;

/// <summary>An MNIST file on disk after <see cref="MnistSource.EnsureAsync"/>: verified <paramref name="Md5"/>, and
/// where it came from (<c>cached</c>, a mirror URL, or the npm package).</summary>
public sealed record MnistFile(string Name, string Path, long Length, string Md5, string Origin);
