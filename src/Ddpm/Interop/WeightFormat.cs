namespace Ddpm.Interop;

/// <summary>The kinds of weight file <see cref="ModelFile.Load"/> reads, told apart by content.</summary>
public enum WeightFormat
{
    /// <summary>This project's checkpoint: a zip with <c>manifest.json</c> and <c>model.safetensors</c>; carries its
    /// config.</summary>
    Checkpoint,

    /// <summary>A PyTorch <c>torch.save(model.state_dict())</c> file (zip with <c>&lt;name&gt;/data.pkl</c>); needs a
    /// config.</summary>
    PyTorch,

    /// <summary>A safetensors state_dict; needs a config.</summary>
    Safetensors,
}
