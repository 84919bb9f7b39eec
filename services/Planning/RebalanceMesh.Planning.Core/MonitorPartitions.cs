namespace RebalanceMesh.Planning.Core;

/// <summary>
/// How the monitor's book is split between planning replicas: every portfolio belongs to one of a fixed number of
/// partitions (a stable hash of its id), and the partitions are dealt round-robin over the live replicas in the order
/// of their names, so every replica computes the same assignment from the same membership and the shares differ by
/// at most one partition. A replica evaluates only the portfolios of the partitions it holds.
/// </summary>
public static class MonitorPartitions
{
    /// <summary>Partitions of a mesh unless configured (Monitor:Partitions).</summary>
    public const int Default = 64;

    /// <summary>
    /// The partition of a portfolio: FNV-1a (32 bits) of its id's UTF-16 code units, mapped to the partitions by its
    /// high bits (hash × partitions / 2³²). Not the remainder: FNV-1a's low bits mix poorly (its lowest bit is the parity
    /// of the characters' lowest bits), so ids that differ by one digit would alternate between two partitions.
    /// </summary>
    public static int Of(string portfolioId, int partitions)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(partitions);
        var hash = 2166136261u;
        foreach (var c in portfolioId)
        {
            hash = (hash ^ (uint)(c & 0xFF)) * 16777619u;
            hash = (hash ^ (uint)(c >> 8)) * 16777619u;
        }

        return (int)(((ulong)hash * (ulong)partitions) >> 32);
    }

    /// <summary>The replica each partition goes to: partition p to the (p mod n)-th live replica in ordinal name order.</summary>
    public static string[] Assign(IEnumerable<string> liveReplicas, int partitions)
    {
        var members = liveReplicas.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (members.Length == 0)
        {
            return new string[partitions];
        }

        return Enumerable.Range(0, partitions).Select(p => members[p % members.Length]).ToArray();
    }

    /// <summary>
    /// What a replica does after reading the membership: give back the partitions it holds that are now another's (first,
    /// so that replica can take them), and take those assigned to it that it does not hold yet (a take succeeds once the
    /// holder has given the partition back, or has left the membership).
    /// </summary>
    public static ShardMoves Moves(string me, IEnumerable<string> liveReplicas, IReadOnlySet<int> held, int partitions)
    {
        var assigned = Assign(liveReplicas.Append(me), partitions);
        var release = held.Where(p => p >= partitions || !string.Equals(assigned[p], me, StringComparison.Ordinal)).Order().ToArray();
        var take = Enumerable.Range(0, partitions).Where(p => string.Equals(assigned[p], me, StringComparison.Ordinal) && !held.Contains(p)).ToArray();
        return new ShardMoves(release, take);
    }
}

/// <summary>Partitions to give back and partitions to take.</summary>
public sealed record ShardMoves(IReadOnlyList<int> Release, IReadOnlyList<int> Take)
{
    public bool None => Release.Count == 0 && Take.Count == 0;
}
