using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// The previous data predictions a multistep solver reuses (diffusers' <c>model_outputs</c>), newest first, with the
/// grid index each was made at. The tensors live outside every dispose scope until they drop out or the run ends. Steps
/// must come in order 0, 1, 2, …; step 0 starts a new run (so one instance can sample several batches one after
/// another).
/// </summary>
internal sealed class ModelOutputHistory(int capacity)
{
    private readonly List<(int Index, Tensor D)> _items = [];
    private int _expected;

    public int Count => _items.Count;

    /// <summary>The prediction made <paramref name="back"/> steps ago (0 = the newest) and its grid index.</summary>
    public (int Index, Tensor D) this[int back] => _items[back];

    /// <summary>Checks that <paramref name="index"/> is the next step; index 0 clears the history.</summary>
    public void Begin(int index, string solver)
    {
        if (index == 0) Clear();
        else if (index != _expected)
            throw new InvalidOperationException($"{solver} is a multistep solver: its steps must be taken in order 0, 1, 2, … (expected step {_expected}, got {index})");
        _expected = index + 1;
    }

    /// <summary>Keeps a copy of <paramref name="d"/> (made at grid index <paramref name="index"/>), dropping the oldest
    /// beyond capacity.</summary>
    public void Push(int index, Tensor d)
    {
        _items.Insert(0, (index, d.detach().DetachFromDisposeScope()));
        while (_items.Count > capacity)
        {
            _items[^1].D.Dispose();
            _items.RemoveAt(_items.Count - 1);
        }
    }

    /// <summary>Disposes every kept prediction.</summary>
    public void Clear()
    {
        foreach (var (_, d) in _items) d.Dispose();
        _items.Clear();
    }
}
