# Build: the release binary, against Debian bookworm's libpq and OpenSSL.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs rustfmt.toml ./
COPY src ./src
COPY templates ./templates
COPY migrations ./migrations
RUN cargo build --release --locked

# Run: a slim image with the binary, its config and static files, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 libssl3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/paymall --shell /usr/sbin/nologin paymall \
    && mkdir -p /var/lib/paymall /etc/paymall && chown paymall:paymall /var/lib/paymall
WORKDIR /app
COPY --from=build /src/target/release/paymall /usr/local/bin/paymall
COPY config ./config
COPY public ./public
ENV PAYMALL_ENV=prod RUST_LOG=info
VOLUME ["/var/lib/paymall"]
USER paymall
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/paymall"]
CMD ["serve"]
