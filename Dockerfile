# syntax=docker/dockerfile:1
#
# scrapelet's container image: the release binary on distroless (glibc, CA certificates, no
# shell), running as the non-root user 65532.
#
#   docker build -t scrapelet:0.1.0 .
#   docker run --rm -p 9464:9464 -v "$PWD/examples:/etc/scrapelet:ro" scrapelet:0.1.0 \
#     --config /etc/scrapelet/scrapelet.yml --listen-address 0.0.0.0:9464
#
# glibc rather than musl: musl's allocator costs CPU under many threads, and CPU per sample
# is what scrapelet is for. Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64`
# builds each platform natively (emulated where needed); both stages are Debian 12.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the benches; they must exist for the manifest to load (none is built).
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin scrapelet \
    && install -D -m 0755 target/release/scrapelet /out/scrapelet

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/scrapelet /usr/local/bin/scrapelet
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/scrapelet"]
CMD ["--config", "/etc/scrapelet/scrapelet.yml"]
