namespace Ddpm.Imaging;

/// <summary>
/// Forwards to <see cref="IO.AtomicFile"/>, where the atomic-write helper now lives, for the files that still call it from
/// here (<c>Evaluation/*</c>, <c>SampleCommand</c>, <c>EvalCommand</c>); delete it once they use <c>Ddpm.IO</c>.
/// </summary>
internal static class AtomicFile
{
    public static void WriteAllBytes(string path, byte[] bytes) => IO.AtomicFile.WriteAllBytes(path, bytes);
}
