# syntax=docker/dockerfile:1
#
# Container image for the `amtsbuch` service.
#
#   docker build -t amtsbuch .
#   docker run --rm -p 127.0.0.1:8080:8080 -v $PWD/secrets:/secrets:ro \
#       -e AMTSBUCH_JWKS=/secrets/jwks.json amtsbuch
#
# With no database URL the service uses the embedded SQLite store under
# /var/lib/amtsbuch/data/ (mount a volume there to keep it). Set
# AMTSBUCH_DATABASE_URL=postgres://… for PostgreSQL; docker-compose.yml does that.
#
# Inside a container 127.0.0.1 is the container itself, so the service listens on
# 0.0.0.0:8080 here, and therefore needs the token keys of a real OIDC provider
# (AMTSBUCH_JWKS or AMTSBUCH_JWT_KEY): development tokens are refused off loopback.
#
# There is no .dockerignore, so the COPY instructions below name only the sources the
# build needs; the local target/ directory (and data/, .git/) never enter the image.
# With BuildKit only those paths are sent to the builder; with the legacy builder the
# whole context is sent, so build from a clean checkout or add a .dockerignore that
# excludes target/.

# ---- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
COPY domain domain
COPY infra infra
COPY projections projections
COPY api api
COPY tests tests
# Embedded into the binary at compile time by sqlx::migrate!.
COPY migrations migrations

# The cache mounts keep the crate registry and incremental build output between builds;
# the binary is copied out of the cached target/ within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p amtsbuch --locked \
    && install -m 0755 target/release/amtsbuch /usr/local/bin/amtsbuch

# ---- run -----------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system amtsbuch \
    && useradd --system --gid amtsbuch --home-dir /var/lib/amtsbuch --no-create-home \
        --shell /usr/sbin/nologin amtsbuch \
    && mkdir -p /var/lib/amtsbuch/data \
    && chown -R amtsbuch:amtsbuch /var/lib/amtsbuch

COPY --from=build /usr/local/bin/amtsbuch /usr/local/bin/amtsbuch
COPY LICENSE /usr/share/doc/amtsbuch/LICENSE

USER amtsbuch
# The default store URL is sqlite://data/amtsbuch.db, relative to the working directory.
WORKDIR /var/lib/amtsbuch

EXPOSE 8080
# Healthy once /readyz answers 200 (database reachable, writer writing), for the default
# --listen below. There is no curl in the image; bash sends the one request itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["amtsbuch"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
