# Redis for the local containers (`rmesh up --containers`): Debian's redis-server on the base image. Real clusters use
# their own Redis (a managed service or an operator); this image exists so the whole mesh runs from local images.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
USER redis
ENTRYPOINT ["redis-server"]
