# BrainLoc in one container, for a clinic that hosts it itself.
#
#   docker build -t brainloc .
#   docker run -d --name brainloc -p 8501:8501 -v brainloc-data:/data brainloc
#   docker exec -it brainloc python -m brainloc create-admin \
#       --username chief --email chief@clinic.example --full-name "Dr Chief"
#
# All state (the SQLite database, the generated cookie key) lives in the /data volume; the
# image holds no secret. Configure it with the environment variables in the README
# ("Configuration"), e.g. -e BRAINLOC_COOKIE_KEY=... instead of the generated key file.
# With podman, build with `--format docker` so that the HEALTHCHECK is kept.

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# An unprivileged user; the code stays owned by root and read-only to it.
RUN groupadd --gid 10001 brainloc \
    && useradd --uid 10001 --gid brainloc --create-home --home-dir /home/brainloc \
       --shell /usr/sbin/nologin brainloc \
    && mkdir /data \
    && chown brainloc:brainloc /data \
    && chmod 0700 /data

WORKDIR /app
COPY app.py ./
COPY .streamlit/config.toml .streamlit/config.toml
COPY brainloc/ brainloc/
COPY db/ db/
COPY ui/ ui/
COPY pages/ pages/
COPY models/ models/
RUN python -m compileall -q /app

# Streamlit reads STREAMLIT_* variables (e.g. -e STREAMLIT_SERVER_PORT=8080); the rest of
# its settings come from .streamlit/config.toml.
ENV BRAINLOC_DATA_DIR=/data \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501
VOLUME ["/data"]

USER brainloc
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/_stcore/health' % os.environ.get('STREAMLIT_SERVER_PORT', '8501'); sys.exit(urllib.request.urlopen(url, timeout=4).read() != b'ok')"]

CMD ["streamlit", "run", "app.py"]
