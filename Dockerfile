# syntax=docker/dockerfile:1
#
# One image, two roles (same code, same dependencies, same settings, so a model trained by the
# Dagster code location always loads in the API):
#   default CMD   the Dagster code location over gRPC on :4000 (webserver/daemon connect to it;
#                 with the default run launcher, runs also execute in this container)
#   API           docker run ... uvicorn bike_serving.app:app --host 0.0.0.0 --port 8000
# dagster-webserver and dagster-daemon are in the image too (pyproject), so docker-compose.yml
# runs every Dagster process from it. Configuration is environment only (.env.example); nothing
# secret is baked in.
#
#   docker build -t bike-traffic .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a self-contained virtualenv at /opt/venv -------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# The `prod` extra (pyproject.toml) brings dagster-postgres and psycopg2 (Dagster's storage and
# MLflow's backend in compose and Helm). dagster-k8s is only for Helm's K8sRunLauncher (its run
# pods load the instance, and so the launcher class, from this image); 0.29.x pairs with dagster
# 1.13.x. Override with --build-arg EXTRA_PIP_PACKAGES="" for an image without it.
ARG EXTRA_PIP_PACKAGES="dagster-k8s>=0.29,<0.30"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` reads: pyproject (with its readme), the lock and the two packages.
# Tests, benchmarks, data and .env never enter the build context (.dockerignore).
COPY pyproject.toml README.md constraints.txt ./
COPY bike_assets ./bike_assets
COPY bike_serving ./bike_serving
# Non-editable install, pinned by the lock (the versions CI tested): the runtime stage needs
# /opt/venv only, not /src. Every dependency ships manylinux wheels, so no compiler is needed;
# the cache mount keeps rebuilds fast without leaving pip's cache in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt ".[prod]" ${EXTRA_PIP_PACKAGES}

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="bike-traffic" \
      org.opencontainers.image.description="Paris bike counts: Dagster code location and Litestar forecast API" \
      org.opencontainers.image.licenses="MIT"

# A fixed, unprivileged uid/gid: Kubernetes' runAsNonRoot can verify a numeric USER, and
# volumes can be chowned to it predictably.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --gid "${APP_GID}" bike \
    && useradd --uid "${APP_UID}" --gid bike --home-dir /home/bike --create-home \
       --shell /usr/sbin/nologin bike

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    BIKE_DATA_DIR=/data

# DAGSTER_HOME holds the repo's instance config (sqlite under DAGSTER_HOME/storage unless a
# deployment mounts another dagster.yaml over it, as docker-compose.yml does for Postgres).
# /data and DAGSTER_HOME/storage are created owned by the app user because a named volume mounted
# there starts as a copy of the image's directory, ownership included: a root-owned mount point
# would make the volume unwritable for the non-root user.
COPY --chown=bike:bike dagster.yaml /opt/dagster/home/dagster.yaml
RUN mkdir -p /opt/dagster/home/storage /data /opt/dagster/app \
    && chown -R bike:bike /opt/dagster /data

WORKDIR /opt/dagster/app
USER bike:bike

# 4000 code location (gRPC), 8000 API, 3000 dagster-webserver.
EXPOSE 4000 8000 3000

# No HEALTHCHECK here: the right probe depends on the role (gRPC health check for the code
# location, HTTP /health/live for the API), so docker-compose.yml and the Kubernetes manifests
# declare one per service.
CMD ["dagster", "code-server", "start", "-m", "bike_assets.definitions", "-h", "0.0.0.0", "-p", "4000"]
