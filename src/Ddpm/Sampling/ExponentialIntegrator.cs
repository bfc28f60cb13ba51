namespace Ddpm.Sampling;

/// <summary>The φ-functions of exponential integrators, in which DPM-Solver++ and UniPC write their
/// coefficients.</summary>
public static class ExponentialIntegrator
{
    /// <summary>
    /// φ_0(z) = e^z, φ_{k+1}(z) = (φ_k(z) − 1/k!)/z (Hochbruck &amp; Ostermann 2010, eq. 2.10; UniPC, Zhao et al. 2023,
    /// eq. 6), by its Taylor series Σ_j z^j/(j+k)! for |z| &lt; 1, where the recursion would cancel, else by the
    /// recursion.
    /// </summary>
    public static double Phi(int k, double z)
    {
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), "φ_k needs k ≥ 0");
        if (k == 0) return Math.Exp(z);
        if (Math.Abs(z) < 1)
        {
            double term = 1.0;
            for (int j = 2; j <= k; j++) term /= j; // 1/k!
            double sum = 0;
            for (int j = 0; j < 40 && term != 0; j++)
            {
                sum += term;
                term *= z / (j + k + 1);
            }
            return sum;
        }
        double phi = Math.Exp(z), factorial = 1;
        for (int j = 0; j < k; j++)
        {
            if (j > 0) factorial *= j;
            phi = (phi - 1 / factorial) / z;
        }
        return phi;
    }

    /// <summary>e^z − 1 = z·φ_1(z) without cancellation for small z.</summary>
    public static double Expm1(double z) => Math.Abs(z) < 1 ? z * Phi(1, z) : Math.Exp(z) - 1;
}
