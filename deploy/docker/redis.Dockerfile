# Stand-in for the official redis image, from Debian's redis-server (7.0 in bookworm), for sites
# that cannot pull images. The compose file runs it with the same command as the official image.
ARG DEBIAN_IMAGE=ocsf-anomaly/debian:bookworm
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
VOLUME ["/data"]
# the user the Debian package made (its uid is assigned at install)
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
