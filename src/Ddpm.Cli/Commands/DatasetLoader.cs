using Ddpm.Configuration;
using Ddpm.Data;

namespace Ddpm.Cli.Commands;

/// <summary>Opens the training set a config names.</summary>
internal static class DatasetLoader
{
    public static ImageDataset Load(DdpmConfig config) => config.Dataset.Name switch
    {
        "synthetic" => SyntheticImages.Create(512, config.Model.ImChannels, config.Model.ImSize, config.Train.Seed),
        _ => throw new DataException(config.Dataset.ImPath, "data loading is not wired yet"),
    };
}
