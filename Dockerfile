# gatherd container image.
#
#   build:  podman build -t gatherd .        (or docker build; tested with ../shared/tools/container-check)
#   run:    podman run --rm -p 8080:8080 \
#             -v ./my-gatherd.json:/etc/gatherd/gatherd.json:ro \
#             -e PGHOST=db.internal -e PGUSER=gatherd -e PGDATABASE=app -e PGPASSWORD=... gatherd
#
# Postgres is configured only through libpq's standard environment variables (PGHOST, PGPORT,
# PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGAPPNAME, ...): the default config's
# "postgres.conninfo" is empty, so nothing secret is baked into the image or the config.

# ---------------------------------------------------------------------------------------------
# Build stage: compiler, meson and the -dev packages; nothing of it reaches the final image.
FROM debian:bookworm-slim AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev meson ninja-build pkg-config \
      libh2o-dev libuv1-dev libjansson-dev libssl-dev libpq-dev zlib1g-dev libjwt-dev libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what meson.build reads with -Dtests=false: the sources and the files the install block
# installs; tests/ stays out of the image's build.
COPY meson.build meson_options.txt ./
COPY cmd/ cmd/
COPY lib/ lib/
COPY systemd/ systemd/
COPY conf/ conf/

# Only the daemon is compiled; `meson install --no-rebuild` then installs
# what was built: /out/usr/bin/gatherd (plus the unit and example config, unused here).
RUN meson setup /build -Dtests=false --buildtype=release --prefix=/usr --sysconfdir=/etc \
 && meson compile -C /build gatherd:executable \
 && meson install -C /build --no-rebuild --destdir /out \
 && /out/usr/bin/gatherd --version

# ---------------------------------------------------------------------------------------------
# Run stage: the runtime libraries only (libh2o0.13 is the runtime package of libh2o-dev 2.2.5;
# it pulls libwslay1 and zlib), no compiler, no shell tools beyond the base image's.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libh2o0.13 libuv1 libjansson4 libpq5 libssl3 zlib1g libjwt0 libhiredis0.14 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric, non-root uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and a fixed uid lets operators grant file access (mounted configs, secrets) predictably.
RUN groupadd --system --gid 10001 gatherd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gatherd

COPY --from=build /out/usr/bin/gatherd /usr/bin/gatherd
# The default config (conf/gatherd.json: listen *:8080, admin 127.0.0.1:9090, JSON logs, libpq
# from PG* variables). Mount your own over it: -v ./gatherd.json:/etc/gatherd/gatherd.json:ro
# (or a ConfigMap on /etc/gatherd). It is readable by everyone and writable by nobody here.
COPY conf/gatherd.json /etc/gatherd/gatherd.json

USER 10001:10001

# 8080: the API (config "listen"); 9090: the admin listener (/healthz, /readyz, /metrics).
# The default config binds the admin port to 127.0.0.1 only, which the HEALTHCHECK below (run
# inside the container) reaches; publish 9090 only with an admin_listen of 0.0.0.0:9090.
EXPOSE 8080 9090

# gatherd drains on SIGTERM (shutdown.drain_delay_ms, then shutdown.timeout_ms for requests in
# flight): give `docker stop -t` / `podman stop -t` more than their sum (the default config
# needs > 25 s: use -t 30).
STOPSIGNAL SIGTERM

# No curl/wget in the image: gatherd's own --probe mode does one HTTP GET and exits 0 on a 2xx.
# It must name the config's admin_listen address (127.0.0.1:9090 by default).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["gatherd", "--probe", "http://127.0.0.1:9090/healthz"]

ENTRYPOINT ["gatherd"]
CMD ["-c", "/etc/gatherd/gatherd.json"]
