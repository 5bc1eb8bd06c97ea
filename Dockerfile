# futures-scan: one image, every role (collector, engine, tracker, recorder, monitor, discover, simulator, ...).
#
#   docker build -t futures-scan .
#   docker run --rm futures-scan collector --help
#   docker run --rm -v "$PWD/config.json:/app/config.json:ro" futures-scan collector
#
# The first argument names the role (docker/entrypoint.sh maps it to its program); see README "Containers".
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes (every package pinned there).
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The processes run as an unprivileged user; the code stays root-owned (read-only to them). They write only
# where the config's relative paths point: data/ (tracks, history), state/, generated/ (universe), logs/,
# and app.log (config.example.json's logging.file).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY . .
RUN mkdir -p data state generated logs \
    && touch app.log \
    && chown app:app data state generated logs app.log \
    && chmod 0755 docker/entrypoint.sh

USER app

# The monitor (8080), the collector's /metrics (9464), the simulator (8765): published only where asked.
EXPOSE 8080 9464 8765

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["collector"]
