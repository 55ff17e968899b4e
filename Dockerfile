# trustpath in a container: build with the Rust toolchain, ship the
# stripped binary (`--profile dist`) on a slim base, run as a non-root user.
#
#   docker build -t trustpath .
#   docker run -p 8080:8080 -v trustpath-data:/var/lib/trustpath \
#     -v $PWD/trustpath.toml:/etc/trustpath/trustpath.toml:ro trustpath
#
# Listening beyond loopback needs API callers, so the image expects a
# config at /etc/trustpath/trustpath.toml with `[[callers]]` (see
# examples/trustpath.toml). Policies default to the shipped set; mount
# your own over /etc/trustpath/policies.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY schemas schemas
COPY policies policies
COPY README.md LOG-FORMAT.md ./
RUN cargo build --profile dist --locked --bin trustpath \
    && cp target/dist/trustpath /usr/local/bin/trustpath

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/trustpath \
        --shell /usr/sbin/nologin trustpath \
    && install -d -o trustpath -g trustpath -m 0700 /var/lib/trustpath
COPY --from=build /usr/local/bin/trustpath /usr/local/bin/trustpath
COPY policies /etc/trustpath/policies
ENV TRUSTPATH_CONFIG=/etc/trustpath/trustpath.toml \
    TRUSTPATH_DATA_DIR=/var/lib/trustpath \
    TRUSTPATH_POLICIES=/etc/trustpath/policies \
    TRUSTPATH_LISTEN=0.0.0.0:8080
USER 10001:10001
VOLUME ["/var/lib/trustpath"]
EXPOSE 8080
# The binary probes itself: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["trustpath", "health", "--url", "http://127.0.0.1:8080"]
# SIGTERM stops it cleanly: the final checkpoint is signed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["trustpath"]
CMD ["serve"]
