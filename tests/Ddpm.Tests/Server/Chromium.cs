using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;

namespace Ddpm.Tests.Server;

/// <summary>
/// Debian's headless Chromium driven by its chromedriver (apt: chromium, chromium-driver), started so that it makes no
/// network calls of its own. Tests that need it are skipped with the reason when it is missing, except in CI
/// (<c>DDPM_REQUIRE_CHROMIUM=1</c>, set by <c>.ci/run</c> after installing it, or <c>CI=true</c>), where a missing
/// browser is a failure.
/// </summary>
internal static class Chromium
{
    public const string Browser = "/usr/bin/chromium", Driver = "/usr/bin/chromedriver";

    public static bool Available => File.Exists(Browser) && File.Exists(Driver);

    public static bool InCi => Environment.GetEnvironmentVariable("DDPM_REQUIRE_CHROMIUM") == "1"
        || string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Null when the tests may run; otherwise why they are skipped.</summary>
    public static string? SkipReason => Available || InCi ? null
        : $"Chromium not installed ({Browser}, {Driver}): apt-get install -y chromium chromium-driver (CI installs them and never skips)";

    public static ChromeDriver Start(string profileDir, int width = 1280, int height = 860)
    {
        if (TestCategory.FastRun) throw new InvalidOperationException("the fast subset starts no browser: give the test [Trait(TestCategory.Name, TestCategory.Process)]");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(Driver)!, Path.GetFileName(Driver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = Browser };
        options.AddArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            $"--user-data-dir={profileDir}", $"--window-size={width},{height}");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }
}

/// <summary>A fact that needs Chromium: skipped with the reason when it is absent (never in CI).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Chromium.SkipReason is { } reason) Skip = reason;
    }
}
