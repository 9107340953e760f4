# syntax=docker/dockerfile:1
# sinkhost image. The builder runs the make targets CI runs (`make dist`, which
# runs `make build` first) and unpacks the release tarball; the runtime stage
# holds exactly that tarball's contents, so the image and a systemd install
# ship the same files. Untested in CI: there is no Docker engine there
# (tests/dist.rs tests the tarball itself).
#
#   docker build -t sinkhost .
#   docker run --rm -e NATS_URL=nats://nats.example:4222 -p 8090:8090 \
#     -v "$PWD/config.d:/etc/sinkhost/config.d:ro" sinkhost

# The workspace's rust-version; trixie, like the runtime stage, so the binary
# links against the glibc it runs with.
FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
# `make dist` installs the wasm32-wasip2 target itself (`.tools/wasm-target`).
RUN make dist \
 && mkdir /dist \
 && tar -xzf target/dist/sinkhost-*-linux.tar.gz -C /dist --strip-components=1

FROM debian:trixie-slim
# ca-certificates: async-nats trusts the system roots for tls:// NATS servers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sinkhost \
 && install -d -o sinkhost -g sinkhost /var/cache/sinkhost
# bin/sinkhost with bin/plugins/ beside it: built-in plugin names resolve
# without SINKHOST_PLUGIN_DIR. The shipped config.d is the default; mount yours
# over /etc/sinkhost/config.d.
COPY --from=build /dist /opt/sinkhost
COPY --from=build /dist/config.d /etc/sinkhost/config.d
USER sinkhost
# /healthz and /metrics. sinkhost listens on 127.0.0.1:8090 by default, which
# would be unreachable from outside the container.
ENV SINKHOST_LISTEN=0.0.0.0:8090
# Compiled plugins (a volume here keeps restarts from compiling them again).
ENV SINKHOST_CACHE_DIR=/var/cache/sinkhost
EXPOSE 8090
# The image has no curl or wget; bash's /dev/tcp asks /healthz on the port of
# SINKHOST_LISTEN (200 once every subscription consumes, 503 while not). Start
# takes a few seconds: the plugins are compiled to machine code first.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${SINKHOST_LISTEN##*:}\" && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/opt/sinkhost/bin/sinkhost"]
CMD ["run", "--config-dir", "/etc/sinkhost/config.d"]
