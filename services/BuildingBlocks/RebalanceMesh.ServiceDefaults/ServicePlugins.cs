using System.Reflection;
using System.Runtime.Loader;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// A part of a service that is not in its production build and is plugged in by configuration: the simulated venues of
/// execution are one (local runs, tests, the demo); a real venue's connector shipped on its own could be another.
/// </summary>
public interface IServicePlugin
{
    /// <summary>Adds the plugin's services, options and event subscriptions to the host being built.</summary>
    void Register(IHostApplicationBuilder builder);
}

/// <summary>Loads the plugins named in configuration section <c>Plugins</c> (a list) into the host being built.</summary>
public static class ServicePlugins
{
    /// <summary>
    /// Loads each plugin of <c>Plugins</c> — an assembly file path (absolute, or relative to the service's directory) or
    /// the name of an assembly the service can already resolve — and registers every <see cref="IServicePlugin"/> in it.
    /// A plugin that cannot be loaded stops the start-up: a service without the venues it was configured for must not run.
    /// </summary>
    /// <returns>The names of the plugins registered, in order.</returns>
    public static IReadOnlyList<string> AddServicePlugins(this IHostApplicationBuilder builder)
    {
        var loaded = new List<string>();
        foreach (var entry in builder.Configuration.GetSection("Plugins").GetChildren().Select(c => c.Value).Where(v => !string.IsNullOrWhiteSpace(v)))
        {
            var assembly = Load(entry!);
            var plugins = assembly.GetExportedTypes()
                .Where(t => typeof(IServicePlugin).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
                .ToArray();
            if (plugins.Length == 0)
            {
                throw new InvalidOperationException($"Plugin {entry}: {assembly.GetName().Name} has no public {nameof(IServicePlugin)}.");
            }

            foreach (var type in plugins)
            {
                ((IServicePlugin)Activator.CreateInstance(type)!).Register(builder);
                loaded.Add(type.FullName!);
            }
        }

        return loaded;
    }

    private static Assembly Load(string entry)
    {
        try
        {
            if (!entry.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            {
                return Assembly.Load(new AssemblyName(entry));
            }

            var path = Path.IsPathRooted(entry) ? entry : Path.Combine(AppContext.BaseDirectory, entry);
            // The default context: the plugin shares the service's own assemblies (contracts, options, ports) by name.
            return AssemblyLoadContext.Default.LoadFromAssemblyPath(Path.GetFullPath(path));
        }
        catch (Exception ex) when (ex is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            throw new InvalidOperationException($"Plugin {entry} could not be loaded: {ex.Message}", ex);
        }
    }
}
