# The ocsf-anomaly scoring service. Build from the repository root, after `make wheelhouse` has put
# the CPU build of torch (and this project's wheel) in build/wheelhouse:
#
#   make wheelhouse && docker build -t ocsf-anomaly:0.1.0 .
#   docker run --rm -v ocsf-anomaly:/var/lib/ocsf-anomaly ocsf-anomaly:0.1.0 demo   # a model to serve
#   docker run -p 127.0.0.1:8080:8080 -v ocsf-anomaly:/var/lib/ocsf-anomaly ocsf-anomaly:0.1.0
#
# BASE_IMAGE: any Debian bookworm image with Python 3.11 as `python3`: the official one by default,
# or the one `make images-airgap` builds from Debian's packages where no registry can be reached.
# Extra CA certificates (a TLS-inspecting proxy between the build and PyPI): put them, PEM, named
# *.crt, in deploy/docker/ca-certificates/ (nothing there is committed; README there).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY deploy/docker/ca-certificates/ /usr/local/share/ca-certificates/extra/
# update-ca-certificates only reads *.crt: the README placed there is ignored
RUN update-ca-certificates
# torch first, from its wheel, in a layer of its own (the largest, and the same from one release of
# this project to the next): an index would offer the CUDA build, gigabytes of libraries never used.
COPY build/wheelhouse/torch-*.whl /wheelhouse/
RUN python3 -m venv /opt/ocsf-anomaly \
    && /opt/ocsf-anomaly/bin/pip install --no-compile /wheelhouse/torch-*.whl \
    && rm -rf /opt/ocsf-anomaly/lib/python3.11/site-packages/torch/include
# Then the project with what the service and the stream consumer use (opensearch, kafka; not spark,
# which runs in a cluster's own image beside Java, nor report), its dependencies held to the versions `make test` ran with
# (constraints.txt, frozen by `make wheelhouse`). Left out: packages' own test suites (the find
# below) and torch's C++ headers (removed above: for building extensions, never done here). Compiled
# once here, for good (the image's files never change: hashes unchecked): the image runs as a user
# that cannot write a cache, so without it every process (each serving process, each health check)
# compiled its imports from source, seconds each, a health check as long as its 3 s timeout. (torch's
# tests of later Pythons' syntax cannot be compiled by this one: left out.)
COPY build/wheelhouse/constraints.txt build/wheelhouse/ocsf_anomaly-*.whl /wheelhouse/
RUN set -- /wheelhouse/ocsf_anomaly-*.whl \
    && /opt/ocsf-anomaly/bin/pip install --no-compile --constraint /wheelhouse/constraints.txt "$1[opensearch,kafka]" \
    && find /opt/ocsf-anomaly -name tests -path "*site-packages/*/tests" -prune -exec rm -rf {} + \
    && /opt/ocsf-anomaly/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x 'torch/testing/_internal/py3[0-9]+_' /opt/ocsf-anomaly

FROM ${BASE_IMAGE}
# the CA certificates the build trusted, for MLflow or Redis behind the same proxy
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /opt/ocsf-anomaly /opt/ocsf-anomaly
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ocsf-anomaly --create-home scorer
ENV PATH=/opt/ocsf-anomaly/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OCSF_ANOMALY_HOME=/var/lib/ocsf-anomaly \
    OCSF_ANOMALY_HOST=0.0.0.0 \
    OCSF_ANOMALY_PORT=8080
# the local registry (when no MLflow server is set), bundles and demo files
VOLUME ["/var/lib/ocsf-anomaly"]
WORKDIR /var/lib/ocsf-anomaly
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python3", "-m", "scorer.service.healthcheck"]
# serving processes: OCSF_ANOMALY_WORKERS (default: one per core the container sees)
ENTRYPOINT ["ocsf-anomaly"]
CMD ["serve"]
