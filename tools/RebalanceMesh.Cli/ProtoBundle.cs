using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace RebalanceMesh.Cli;

/// <summary>
/// The contracts for integrators in one folder (<c>rmesh protos --out DIR</c>): the .proto sources of the four services
/// with every file they or their errors import (google/protobuf, google/rpc status, error details and codes), and the
/// same as one FileDescriptorSet (<c>rebalancemesh.binpb</c>) that dynamic clients load without generating code.
/// </summary>
public static class ProtoBundle
{
    public const string DescriptorSetName = "rebalancemesh.binpb";

    /// <summary>The files of the bundle: every service's, google.rpc's error files, and all they import.</summary>
    public static IReadOnlyList<FileDescriptor> Files()
    {
        var roots = new[]
        {
            Contracts.Planning.V1.PlanningService.Descriptor.File,
            Contracts.Pricing.V1.PricingService.Descriptor.File,
            Contracts.Risk.V1.RiskService.Descriptor.File,
            Contracts.Execution.V1.ExecutionService.Descriptor.File,
            Contracts.Events.V1.EventsReflection.Descriptor,
            Google.Rpc.StatusReflection.Descriptor,
            Google.Rpc.ErrorDetailsReflection.Descriptor,
            Google.Rpc.CodeReflection.Descriptor,
        };
        var ordered = new List<FileDescriptor>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Visit(FileDescriptor file)
        {
            if (!seen.Add(file.Name))
            {
                return;
            }

            foreach (var dependency in file.Dependencies)
            {
                Visit(dependency); // dependencies first: a descriptor set is read in order
            }

            ordered.Add(file);
        }

        foreach (var root in roots)
        {
            Visit(root);
        }

        return ordered;
    }

    /// <summary>Writes the descriptor set and the sources; returns the files written, relative to <paramref name="directory"/>.</summary>
    public static IReadOnlyList<string> Write(string repoRoot, string directory)
    {
        Directory.CreateDirectory(directory);
        var files = Files();
        var set = new FileDescriptorSet();
        set.File.AddRange(files.Select(f => f.ToProto()));
        File.WriteAllBytes(Path.Combine(directory, DescriptorSetName), set.ToByteArray());
        var written = new List<string> { DescriptorSetName };
        foreach (var file in files)
        {
            var source = SourceOf(repoRoot, file.Name);
            if (source is null)
            {
                continue; // google/protobuf's well-known types ship with every protobuf runtime and compiler
            }

            var target = Path.Combine(directory, "proto", file.Name);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(source, target, overwrite: true);
            written.Add(Path.Combine("proto", file.Name));
        }

        return written;
    }

    /// <summary>
    /// Where a file's source is: ours in protos/, google/rpc's in the Google.Api.CommonProtos package the contracts are
    /// built with (its protos folder in the NuGet cache).
    /// </summary>
    private static string? SourceOf(string repoRoot, string name)
    {
        var ours = Path.Combine(repoRoot, "protos", name);
        if (File.Exists(ours))
        {
            return ours;
        }

        if (!name.StartsWith("google/rpc/", StringComparison.Ordinal) && !name.StartsWith("google/api/", StringComparison.Ordinal))
        {
            return null;
        }

        var version = typeof(Google.Rpc.Status).Assembly.GetName().Version!;
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var package = Path.Combine(packages, "google.api.commonprotos", $"{version.Major}.{version.Minor}.{version.Build}", "content", "protos", name);
        return File.Exists(package) ? package : throw new FileNotFoundException($"The source of {name} was not found in the NuGet cache (looked for {package}).");
    }
}
