# Stand-in for prom/prometheus, from Debian's prometheus package, for sites that cannot pull images:
# the same entry point arguments, config path and storage path as the official image.
ARG DEBIAN_IMAGE=ocsf-anomaly/debian:bookworm
FROM ${DEBIAN_IMAGE}
# wget: the compose file's health check, as in the official image (busybox)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
VOLUME ["/prometheus"]
WORKDIR /prometheus
# the user the Debian package made (its uid is assigned at install)
# hadolint ignore=DL3066
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
