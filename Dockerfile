# wtflow as an image: `docker run --rm -v "$PWD:/work" -w /work IMAGE run` runs wtflow.yml of the
# mounted directory. BASE_IMAGE must provide python3 with venv and pip.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# Dependencies first, read from pyproject.toml: this layer is reused until pyproject.toml changes.
# The extras the action's inputs need: container nodes (docker), a PostgreSQL history (postgres),
# and nodes on a Dask cluster (dask, for the dask-scheduler input).
COPY pyproject.toml README.md LICENSE ./
RUN python3 -m venv /opt/wtflow \
 && /opt/wtflow/bin/python -c "import subprocess, sys, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = project['optional-dependencies']; \
deps = project['dependencies'] + [dep for extra in ('docker', 'postgres', 'dask') for dep in extras[extra]]; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', 'hatchling', *deps])"
COPY wtflow ./wtflow
# Bytecode is kept (and compiled for all of wtflow): without it every start compiles
# SQLAlchemy, pydantic and wtflow from source, about 1.3 s more per `docker run`.
RUN /opt/wtflow/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/wtflow/bin/pip uninstall --yes hatchling setuptools \
 && /opt/wtflow/bin/python -m pip uninstall --yes pip \
 && /opt/wtflow/bin/python -m compileall -q -j 0 /opt/wtflow/lib

FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="wtflow" \
      org.opencontainers.image.description="What The Flow: an asynchronous workflow runner" \
      org.opencontainers.image.source="https://github.com/ido123net/wtflow" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /opt/wtflow /opt/wtflow
ENV PATH=/opt/wtflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["wtflow"]
CMD ["--help"]
