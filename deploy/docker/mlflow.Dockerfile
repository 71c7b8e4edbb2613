# Stand-in for ghcr.io/mlflow/mlflow, for sites that cannot pull images: MLflow from PyPI on the
# air-gapped Python base: the version of the compose file's official image (a 3.x server serves the
# scorer's 3.x client).
ARG PYTHON_IMAGE=ocsf-anomaly/python:3.11-bookworm
FROM ${PYTHON_IMAGE}
ARG MLFLOW_VERSION=3.17.2
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/mlflow/bin:$PATH
RUN python3 -m venv /opt/mlflow && /opt/mlflow/bin/pip install "mlflow==${MLFLOW_VERSION}" \
    && useradd --system --uid 10002 --user-group --home-dir /mlflow --create-home mlflow
WORKDIR /mlflow
USER 10002:10002
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0"]
