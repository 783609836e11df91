# The coordinator and the example photo app in one image; docker-compose.yml runs its services
# (worker, beat, flower, metrics, the example API) with the `coordinator` CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app:/app/examples

WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY coordinator ./coordinator
RUN pip install .
COPY examples ./examples

# Run as an unprivileged user; uploads and thumbnails live on a volume at /data/photos.
RUN useradd --create-home --uid 10001 app && mkdir -p /data/photos && chown app /data/photos
USER app

CMD ["coordinator", "--help"]
