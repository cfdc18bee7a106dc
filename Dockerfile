# callrouter: FastAGI routing daemon + AMI listener + HTTP side service in one process.
# Build: docker build -t callrouter .   Run: docker run -p 4573:4573 -p 8000:8000 callrouter
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/callrouter

RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --system --create-home --home-dir /var/lib/callrouter --uid 10001 callrouter

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY callrouter ./callrouter
COPY migrations ./migrations
COPY alembic.ini callrouter.sample.toml ./
RUN uv sync --frozen --no-dev

USER callrouter
WORKDIR /var/lib/callrouter
# Inside a container the daemon must listen on all interfaces; the SQLite file lives
# in the user's home (mount a volume, or point CALLROUTER_DATABASE__URL at PostgreSQL).
ENV PATH=/opt/callrouter/bin:$PATH \
    CALLROUTER_FASTAGI__HOST=0.0.0.0 \
    CALLROUTER_API__HOST=0.0.0.0 \
    CALLROUTER_DATABASE__URL=sqlite+aiosqlite:////var/lib/callrouter/callrouter.db
EXPOSE 4573 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["callrouter"]
CMD ["serve"]
