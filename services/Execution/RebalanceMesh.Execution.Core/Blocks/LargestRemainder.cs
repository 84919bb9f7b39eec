namespace RebalanceMesh.Execution.Core.Blocks;

/// <summary>
/// Pro-rata splitting in whole units by the largest-remainder (Hamilton) rule — the one rule block orders use to hand
/// a block's fills, its internal crosses and its fees back to accounts.
/// <list type="number">
/// <item>Each share's exact pro-rata amount is <c>total × weight / Σ weights</c>; it first gets that amount rounded
/// down to whole units (never above its cap).</item>
/// <item>What is left (less than one unit per share) goes one unit at a time to the shares with the largest
/// remainders (exact − rounded down), ties broken by the larger weight, then by id in ordinal order; a share is never
/// taken above its cap.</item>
/// <item>When <c>total</c> is not a whole number of units, the last piece handed out is the fraction below one unit.</item>
/// </list>
/// So the shares always sum to <c>total</c> exactly, each is within one unit of its exact pro-rata amount (caps aside),
/// and the result depends only on the inputs (no order, no clock, no randomness).
/// </summary>
public static class LargestRemainder
{
    /// <param name="weights">What each share is in proportion to (non-negative).</param>
    /// <param name="total">The amount to split (non-negative, at most the sum of the caps).</param>
    /// <param name="unit">The indivisible unit (a lot; 10⁻⁸ of a currency for fees); positive.</param>
    /// <param name="caps">The most each share may get; null: no cap.</param>
    /// <param name="ids">Each share's id, the last tie-break.</param>
    public static decimal[] Split(IReadOnlyList<decimal> weights, decimal total, decimal unit, IReadOnlyList<decimal>? caps, IReadOnlyList<string> ids)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(unit);
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        if (weights.Count != ids.Count || (caps is not null && caps.Count != weights.Count))
        {
            throw new ArgumentException("One weight, cap and id per share.");
        }

        var shares = new decimal[weights.Count];
        var sum = weights.Sum();
        if (total == 0 || sum <= 0)
        {
            return shares;
        }

        decimal Cap(int i) => caps?[i] ?? decimal.MaxValue;
        if (caps is not null && total > caps.Sum())
        {
            throw new ArgumentOutOfRangeException(nameof(total), "More to split than the shares may take.");
        }

        var remainders = new decimal[shares.Length];
        var left = total;
        for (var i = 0; i < shares.Length; i++)
        {
            var exact = total * (weights[i] / sum);
            shares[i] = Math.Min(Cap(i), decimal.Floor(exact / unit) * unit);
            remainders[i] = exact - shares[i];
            left -= shares[i];
        }

        var order = Enumerable.Range(0, shares.Length)
            .OrderByDescending(i => remainders[i])
            .ThenByDescending(i => weights[i])
            .ThenBy(i => ids[i], StringComparer.Ordinal)
            .ToArray();
        while (left > 0)
        {
            var handed = false;
            foreach (var i in order)
            {
                var give = Math.Min(Math.Min(unit, left), Cap(i) - shares[i]);
                if (give <= 0)
                {
                    continue;
                }

                shares[i] += give;
                left -= give;
                handed = true;
                if (left == 0)
                {
                    break;
                }
            }

            if (!handed)
            {
                throw new InvalidOperationException("The caps leave no room for what is left to split.");
            }
        }

        return shares;
    }
}
