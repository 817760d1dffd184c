# syntax=docker/dockerfile:1
# Stan's image: the `stan` command, run as `stan operator ...` or `stan api ...`
# by the Helm chart. The builder stage makes wheels of Stan and its dependencies;
# the runtime stage installs only those wheels into a venv, so no compiler, source
# tree or pip ships. `make image` builds the same image without Docker
# (stan_controlplane/images.py, from Debian bookworm's own Python 3.11); a test
# checks that the two recipes agree.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY operator operator
COPY api api
COPY cli cli
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/stan/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/stan \
    && pip --python /opt/stan/bin/python install --no-index --find-links=/wheels stan \
    && groupadd --gid 10001 stan \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin stan
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081 9443
ENTRYPOINT ["stan"]
CMD ["--help"]
