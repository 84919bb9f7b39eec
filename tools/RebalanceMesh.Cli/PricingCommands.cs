using RebalanceMesh.ServiceDefaults;
using System.CommandLine;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Cli;

/// <summary>`rmesh pricing …`: a command per pricing RPC.</summary>
public static class PricingCommands
{
    public static Command Create(Option<string?> repoOption, Option<bool> jsonOption)
    {
        var addressOption = new Option<string?>("--pricing") { Description = "Pricing gRPC address (default: from the running mesh, else tye.yaml).", Recursive = true };
        var pricing = new Command("pricing", "Call the pricing service: quotes, valuation, implied volatility, surfaces, history.") { addressOption };
        var dataOption = new Option<string?>("--data") { Description = "The request as protobuf JSON." };
        var fileOption = new Option<FileInfo?>("--file") { Description = "A file holding the request as protobuf JSON." };
        var instrumentsOption = new Option<string[]>("--instrument") { Description = "Instrument id (repeatable).", AllowMultipleArgumentsPerToken = true };
        var underlyingOption = new Option<string?>("--underlying") { Description = "Underlying id." };

        Command Unary(string name, string description, Func<PricingService.PricingServiceClient, ParseResult, CancellationToken, Task<IMessage>> call, params Option[] options)
        {
            var command = new Command(name, description);
            foreach (var option in options)
            {
                command.Options.Add(option);
            }

            command.SetAction(async (parse, ct) =>
            {
                using var channel = Repo.ServiceChannel("pricing", parse.GetValue(repoOption), parse.GetValue(addressOption));
                return await Output.CallAsync(() => call(new PricingService.PricingServiceClient(channel.WithDefaultDeadline()), parse, ct), parse.GetValue(jsonOption));
            });
            return command;
        }

        T Read<T>(ParseResult parse, MessageParser<T> parser)
            where T : IMessage<T> => Output.ReadMessage(parser, parse.GetValue(dataOption), parse.GetValue(fileOption));

        pricing.Subcommands.Add(Unary("get-quotes", "GetQuotes: latest quote per venue and consolidated prices.",
            async (c, p, ct) => await c.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { p.GetValue(instrumentsOption) ?? [] } }, cancellationToken: ct),
            instrumentsOption));
        pricing.Subcommands.Add(Unary("price", "PriceInstruments: value registered or quoted instruments by id (--instrument), or a full request (--data/--file).",
            async (c, p, ct) =>
            {
                var request = p.GetValue(dataOption) is not null || p.GetValue(fileOption) is not null
                    ? Read(p, PriceInstrumentsRequest.Parser)
                    : new PriceInstrumentsRequest { Items = { (p.GetValue(instrumentsOption) ?? []).Select(id => new ValuationItem { InstrumentId = id }) } };
                return await c.PriceInstrumentsAsync(request, cancellationToken: ct);
            },
            instrumentsOption, dataOption, fileOption));
        pricing.Subcommands.Add(Unary("upsert-instruments", "UpsertInstruments: register instruments (UpsertInstrumentsRequest JSON).",
            async (c, p, ct) => await c.UpsertInstrumentsAsync(Read(p, UpsertInstrumentsRequest.Parser), cancellationToken: ct),
            dataOption, fileOption));
        pricing.Subcommands.Add(Unary("list-instruments", "ListInstruments: registered instruments.",
            async (c, p, ct) => await c.ListInstrumentsAsync(new ListInstrumentsRequest { UnderlyingId = p.GetValue(underlyingOption) ?? string.Empty }, cancellationToken: ct),
            underlyingOption));
        pricing.Subcommands.Add(Unary("implied-vol", "ComputeImpliedVolatilities (ComputeImpliedVolatilitiesRequest JSON).",
            async (c, p, ct) => await c.ComputeImpliedVolatilitiesAsync(Read(p, ComputeImpliedVolatilitiesRequest.Parser), cancellationToken: ct),
            dataOption, fileOption));
        pricing.Subcommands.Add(Unary("vol-surface", "GetVolSurface: the surface of an underlying.",
            async (c, p, ct) => await c.GetVolSurfaceAsync(new GetVolSurfaceRequest { UnderlyingId = p.GetValue(underlyingOption) ?? string.Empty }, cancellationToken: ct),
            underlyingOption));
        var dailyOption = new Option<int>("--daily") { Description = "Daily closes to return.", DefaultValueFactory = _ => 10 };
        var intradayOption = new Option<int>("--intraday") { Description = "Intraday mids to return.", DefaultValueFactory = _ => 10 };
        pricing.Subcommands.Add(Unary("history", "GetPriceHistory: daily closes and intraday mids of one instrument (first --instrument).",
            async (c, p, ct) => await c.GetPriceHistoryAsync(new GetPriceHistoryRequest
            {
                InstrumentId = (p.GetValue(instrumentsOption) ?? []).FirstOrDefault() ?? string.Empty,
                DailyCount = p.GetValue(dailyOption),
                IntradayCount = p.GetValue(intradayOption),
            }, cancellationToken: ct),
            instrumentsOption, dailyOption, intradayOption));

        var countOption = new Option<int>("--count") { Description = "Stop after this many updates (0: until Ctrl+C).", DefaultValueFactory = _ => 0 };
        var stream = new Command("stream-quotes", "StreamQuotes: consolidated prices as they change.") { instrumentsOption, countOption };
        stream.SetAction(async (parse, ct) =>
        {
            using var channel = Repo.ServiceChannel("pricing", parse.GetValue(repoOption), parse.GetValue(addressOption));
            var client = new PricingService.PricingServiceClient(channel.WithDefaultDeadline());
            var call = client.StreamQuotes(new StreamQuotesRequest { InstrumentIds = { parse.GetValue(instrumentsOption) ?? [] } }, cancellationToken: ct);
            return await Output.StreamAsync(call, update =>
            {
                if (parse.GetValue(jsonOption))
                {
                    Output.Print(update, json: true);
                    return;
                }

                foreach (var price in update.Prices)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{update.AsOf.ToDateTime():HH:mm:ss.fff} {price.InstrumentId,-10} bid {price.Bid.Value,-12} ask {price.Ask.Value,-12} mid {price.Mid.Value}{(price.Stale ? " STALE" : string.Empty)}"));
                }
            }, parse.GetValue(countOption), ct);
        });
        pricing.Subcommands.Add(stream);
        return pricing;
    }
}
