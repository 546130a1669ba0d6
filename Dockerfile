# The depman image: the one binary on a distroless base, run as a
# non-root user; the role is the first argument (api, worker, watcher, ...).
#   docker build -t depman:dev .      (make docker-build)

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --locked --release --bin depman && cp target/release/depman /depman

# glibc and libgcc, nothing else: depman uses rustls, so no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /depman /usr/local/bin/depman
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/depman"]
CMD ["all"]
