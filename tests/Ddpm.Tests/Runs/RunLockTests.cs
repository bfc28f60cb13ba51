using Ddpm.Runs;
using Ddpm.Training;

namespace Ddpm.Tests.Runs;

/// <summary><see cref="RunLock"/>: one holder at a time, its text names PID and start time, release removes only its
/// own file.</summary>
public class RunLockTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("runlock");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_held_lock_refuses_a_second_owner_until_released()
    {
        using (var first = RunLock.Acquire(_dir))
        {
            Assert.Null(first.TakenOverFrom);
            var holder = RunLock.Parse(File.ReadAllText(first.Path));
            Assert.Equal(RunLock.Current(), holder);
            var e = Assert.Throws<RunLockedException>(() => RunLock.Acquire(_dir));
            Assert.Equal(RunLock.Current(), e.Holder);
        }
        Assert.False(File.Exists(Path.Combine(_dir, RunLock.FileName)));
        using var again = RunLock.Acquire(_dir);
    }

    [Fact]
    public void A_fresh_empty_lock_counts_as_being_created_and_an_old_one_as_debris()
    {
        var path = Path.Combine(_dir, RunLock.FileName);
        File.WriteAllText(path, "");
        Assert.Throws<RunLockedException>(() => RunLock.Acquire(_dir));
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(-1));
        using var taken = RunLock.Acquire(_dir);
        Assert.Equal(RunLock.Current(), RunLock.Parse(File.ReadAllText(path)));
    }

    [Fact]
    public void Release_leaves_a_lock_that_another_process_has_since_taken()
    {
        var path = Path.Combine(_dir, RunLock.FileName);
        var mine = RunLock.Acquire(_dir);
        var other = RunLock.Format(new RunLock.Holder(1, DateTime.UnixEpoch));
        File.WriteAllText(path, other);
        mine.Dispose();
        Assert.Equal(other, File.ReadAllText(path));
    }
}
