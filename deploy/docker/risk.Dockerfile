# risk service image. Build from the repository root:
#   docker build -f deploy/docker/risk.Dockerfile -t rebalancemesh/risk:dev .
# Ports: 8080 gRPC (HTTP/2), 8081 HTTP/1.1 (health probes, Dapr subscriptions). Runs as the non-root app user.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props RebalanceMesh.sln ./
COPY protos/ protos/
COPY data/ data/
COPY services/ services/
RUN dotnet publish services/Risk/RebalanceMesh.Risk/RebalanceMesh.Risk.csproj -c Release -o /app --nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app .
ENV ASPNETCORE_ENVIRONMENT=Production \
    DOTNET_gcServer=0
EXPOSE 8080 8081
USER $APP_UID
ENTRYPOINT ["dotnet", "RebalanceMesh.Risk.dll"]
