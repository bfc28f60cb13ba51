namespace Ddpm.Runtime;

/// <summary>
/// Lets an object be disposed while other threads call it: each call runs inside <see cref="Enter"/> (which throws
/// <see cref="ObjectDisposedException"/> once disposal began), and <see cref="Close"/> refuses new calls and waits for
/// the running ones, so native memory is never freed under a call that still uses it.
/// </summary>
internal sealed class UseGuard
{
    private readonly object _gate = new();
    private readonly List<int> _threads = []; // one entry per call running, by managed thread id
    private bool _closed;

    /// <summary>
    /// Begins a call on <paramref name="owner"/> (one nested in a running call goes on); dispose the result when it
    /// ends.
    /// </summary>
    public Scope Enter(object owner)
    {
        lock (_gate)
        {
            int thread = Environment.CurrentManagedThreadId;
            ObjectDisposedException.ThrowIf(_closed && !_threads.Contains(thread), owner);
            _threads.Add(thread);
        }
        return new Scope(this);
    }

    /// <summary>Refuses new calls and waits until none runs; false when already closed (dispose then has nothing to
    /// do).</summary> <exception cref="InvalidOperationException">Called from inside a call (it would wait for
    /// itself).</exception>
    public bool Close()
    {
        lock (_gate)
        {
            if (_closed) return false;
            if (_threads.Contains(Environment.CurrentManagedThreadId))
                throw new InvalidOperationException("disposed from inside one of its own calls (e.g. a step callback); dispose it after the call returns");
            _closed = true;
            while (_threads.Count > 0) Monitor.Wait(_gate);
        }
        return true;
    }

    private void Exit()
    {
        lock (_gate)
        {
            _threads.Remove(Environment.CurrentManagedThreadId);
            if (_threads.Count == 0) Monitor.PulseAll(_gate);
        }
    }

    public readonly struct Scope(UseGuard guard) : IDisposable
    {
        public void Dispose() => guard.Exit();
    }
}
