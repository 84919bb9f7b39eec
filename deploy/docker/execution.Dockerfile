# execution service image. Build from the repository root:
#   docker build -f deploy/docker/execution.Dockerfile -t rebalancemesh/execution:1.0 .
#   docker build -f deploy/docker/execution.Dockerfile --build-arg VENUE_SIMULATORS=true -t rebalancemesh/execution:dev .
# Ports: 8080 gRPC (HTTP/2), 8081 HTTP/1.1 (health probes, Dapr subscriptions). Runs as the non-root app user.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props RebalanceMesh.sln ./
COPY protos/ protos/
COPY data/ data/
COPY services/ services/
RUN dotnet publish services/Execution/RebalanceMesh.Execution/RebalanceMesh.Execution.csproj -c Release -o /app --nologo
# The simulated venues are a plugin, not part of the service: a production image holds none. A development image
# (`--build-arg VENUE_SIMULATORS=true`, the dev overlay's) adds it under /app/plugins, loaded by Plugins__0.
ARG VENUE_SIMULATORS=false
RUN if [ "$VENUE_SIMULATORS" = "true" ]; then \
      dotnet publish services/Execution/RebalanceMesh.Execution.Simulators/RebalanceMesh.Execution.Simulators.csproj -c Release -o /app/plugins --nologo; \
    fi

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app .
ENV ASPNETCORE_ENVIRONMENT=Production \
    DOTNET_gcServer=0
EXPOSE 8080 8081
USER $APP_UID
ENTRYPOINT ["dotnet", "RebalanceMesh.Execution.dll"]
