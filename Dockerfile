# The orchestrator image for docker-compose.yml: workers and the API run it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY connectors ./connectors
RUN pip install --no-cache-dir .
# Flows and templates are data: the defaults (flows/, templates/) resolve here.
COPY flows ./flows
COPY templates ./templates
COPY samples ./samples
RUN useradd --create-home orchestrator
USER orchestrator
ENTRYPOINT []
CMD ["orchestrator", "--help"]
