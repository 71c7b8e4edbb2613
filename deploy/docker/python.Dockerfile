# Python 3.11 on the Debian bookworm base that `make images-airgap` made with debootstrap: the
# scorer's BASE_IMAGE where the official python image cannot be pulled. Debian bookworm's python3
# is 3.11.
ARG DEBIAN_IMAGE=ocsf-anomaly/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY deploy/docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && update-ca-certificates
CMD ["python3"]
