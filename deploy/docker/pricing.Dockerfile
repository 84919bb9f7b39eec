# pricing service image. Build from the repository root:
#   docker build -f deploy/docker/pricing.Dockerfile -t rebalancemesh/pricing:dev .
# Ports: 8080 gRPC (HTTP/2), 8081 HTTP/1.1 (health probes, Dapr subscriptions, /metrics). Runs as the non-root app user.
# A self-contained publish (the .NET runtime comes from NuGet's runtime packs), so the runtime image needs only the
# native dependencies. The base images are build arguments: the official .NET images by default (real clusters);
# deploy/images/build.sh builds them here from a Debian root file system made by debootstrap (no registry needed).
ARG SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0
FROM ${SDK_IMAGE} AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props RebalanceMesh.sln ./
COPY protos/ protos/
COPY data/ data/
COPY services/ services/
RUN dotnet publish services/Pricing/RebalanceMesh.Pricing/RebalanceMesh.Pricing.csproj -c Release -r linux-x64 --self-contained -o /app --nologo --disable-build-servers

FROM ${RUNTIME_IMAGE} AS runtime
WORKDIR /app
COPY --from=build /app .
ENV ASPNETCORE_ENVIRONMENT=Production \
    DOTNET_gcServer=0
EXPOSE 8080 8081
USER $APP_UID
ENTRYPOINT ["./RebalanceMesh.Pricing"]
