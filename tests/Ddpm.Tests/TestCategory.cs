namespace Ddpm.Tests;

/// <summary>
/// The two traits the fast subset (<c>./scripts/test.sh --fast</c>) leaves out. <see cref="Process"/>: the test starts
/// other processes (the CLI, the kill target, mpirun, Python, a browser); in the fast run the one launcher,
/// <see cref="Reliability.ChildProcess.Launch"/>, refuses, so a test that starts one without the trait fails there.
/// <see cref="Slow"/>: in-process but long (load and memory-growth tests, fuzzing, and any test over about 2 s on a
/// 2-core machine), so the fast subset stays near a minute.
/// </summary>
internal static class TestCategory
{
    public const string Name = "Category", Process = "Process", Slow = "Slow";

    /// <summary>Set by <c>./scripts/test.sh --fast</c>.</summary>
    public const string FastVariable = "DDPM_FAST_TESTS";

    public static bool FastRun => Environment.GetEnvironmentVariable(FastVariable) == "1";
}
