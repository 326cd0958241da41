# A pipeline-mode compute module image: linux/amd64, numeric non-root USER,
# a pinned base (never `latest`), /bin/sh present (Foundry captures stdout logs through it).
# This one is the doubler example's; `connector init` writes one for your own project (README: Deploy).
# Build: docker build --platform linux/amd64 -t doubler:0.1.0 .
FROM --platform=linux/amd64 python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONNECTOR_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY framework ./framework
COPY fake_stream_proxy ./fake_stream_proxy
# The examples are not part of the distribution: they run from /app, the working directory (on sys.path).
COPY connectors ./connectors
RUN pip install . && useradd --uid 5000 --no-create-home --shell /bin/sh connector

USER 5000

# `docker run image other.module:Class` runs another connector from the same image.
ENTRYPOINT ["connector", "run"]
CMD ["connectors.doubler:Doubler"]
