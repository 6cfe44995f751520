# syntax=docker/dockerfile:1
# One image for every imageopt process kind; the command picks the kind:
#   migrate | scheduler | worker --queues create | worker --queues poll | api | emulator
# Build:  docker build -t imageopt:$(git rev-parse --short HEAD) .
# Pin the base by digest in your registry mirror for byte-identical rebuilds, e.g.
#   --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>   (see docs/DEPLOY.md)
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtualenv with the dependencies, then the project, compiled to bytecode ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/imageopt
ENV PATH=/opt/imageopt/bin:$PATH
# Dependencies first, pinned with hashes by requirements.lock (`make lock`; their own layer:
# rebuilt only when the lock changes). The lock includes the `faces` extra (OpenCV headless and
# NumPy, about 235 MB installed, manylinux wheels for amd64 and arm64, no system libraries) so
# that image analysis counts faces in production too (pipeline/analysis.py).
COPY requirements.lock ./
RUN pip install --require-hashes --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY scheduler ./scheduler
COPY workers ./workers
COPY emulator ./emulator
COPY api ./api
COPY cli ./cli
COPY devstack ./devstack
RUN pip install --no-deps /src \
    && python -m compileall -q /opt/imageopt/lib

# ---- runtime: the virtualenv only, a non-root user, no compilers, no source tree ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="imageopt" \
      org.opencontainers.image.description="Queue-driven AI image optimization pipeline (scheduler, workers, api, migrations)"
ENV PATH=/opt/imageopt/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGEOPT_LOG_FORMAT=json \
    IMAGEOPT_HEALTHCHECK_URL=http://127.0.0.1:8080/livez
RUN groupadd --system --gid 10001 imageopt \
    && useradd --system --uid 10001 --gid imageopt --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin imageopt
COPY --from=build /opt/imageopt /opt/imageopt
COPY deploy/docker/healthcheck.py /usr/local/bin/imageopt-healthcheck
WORKDIR /tmp
USER 10001:10001
# api 8080; scheduler and worker metrics (see docs/DEPLOY.md for the ports)
EXPOSE 8080 9191
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/imageopt-healthcheck"]
# dramatiq (workers) and the scheduler handle SIGTERM themselves: finish, requeue, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["imageopt"]
CMD ["--help"]
