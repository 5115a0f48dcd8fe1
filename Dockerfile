# The API: gunicorn serving app:create_app(). Build: docker build -t stepwise .
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN useradd --system --uid 10001 --home-dir /srv/stepwise stepwise
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/stepwise
COPY --chown=stepwise:stepwise alembic.ini gunicorn.conf.py ./
COPY --chown=stepwise:stepwise app ./app
COPY --chown=stepwise:stepwise migrations ./migrations
COPY --chown=stepwise:stepwise workers ./workers
RUN mkdir -p /tmp/prometheus && chown stepwise:stepwise /tmp/prometheus
USER stepwise
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"
CMD ["sh", "-c", "exec gunicorn --config gunicorn.conf.py --workers ${GUNICORN_WORKERS:-4} --bind 0.0.0.0:${PORT} 'app:create_app()'"]
