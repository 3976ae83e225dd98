# peakguard: a release build on Debian bookworm (librdkafka is built from
# source by rdkafka-sys, statically).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev libsasl2-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/peakguard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 peakguard
COPY --from=build /src/target/release/peakguard /usr/local/bin/peakguard
COPY config /etc/peakguard/config
USER peakguard
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/peakguard"]
CMD ["run", "--config", "/etc/peakguard/peakguard.toml"]
