# Stand-in for prom/alertmanager, from Debian's prometheus-alertmanager package, for sites that
# cannot pull images: the same entry point arguments and paths as the official image.
ARG DEBIAN_IMAGE=ocsf-anomaly/debian:bookworm
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /alertmanager && chown prometheus:prometheus /alertmanager
VOLUME ["/alertmanager"]
WORKDIR /alertmanager
# the user the Debian package made (its uid is assigned at install)
# hadolint ignore=DL3066
USER prometheus
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
