# syntax=docker/dockerfile:1
# latchkey's container image: built here, run FROM scratch as a non-root user.
#
#   docker build -t ghcr.io/latchkey-dev/latchkey:0.1.0 .
#
# The runtime stage holds nothing but what scripts/image-rootfs.sh collects in the build
# stage (the binary, the libraries ldd lists, CA certificates, a passwd entry): no shell,
# no package manager. tests/cli/image.rs builds the same root and runs latchkey in it.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin latchkey \
    && sh scripts/image-rootfs.sh target/release/latchkey /rootfs

FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="latchkey" \
      org.opencontainers.image.description="GitOps controller for access: declare who may use which client portal and staging system in git." \
      org.opencontainers.image.source="https://github.com/latchkey-dev/latchkey" \
      org.opencontainers.image.url="https://github.com/latchkey-dev/latchkey" \
      org.opencontainers.image.documentation="https://github.com/latchkey-dev/latchkey#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /rootfs/ /
# The folders latchkey writes (its mirror cache, ~/.cache) belong to its user.
COPY --from=build --chown=65532:65532 /rootfs/home/latchkey /home/latchkey
COPY --from=build --chown=65532:65532 /rootfs/var/cache/latchkey /var/cache/latchkey
ENV HOME=/home/latchkey \
    LATCHKEY_CACHE_DIR=/var/cache/latchkey \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/latchkey
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["--help"]
