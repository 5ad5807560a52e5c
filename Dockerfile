FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rabbitscale ./rabbitscale
COPY core ./core
COPY harness ./harness
COPY scenarios ./scenarios
COPY capacity ./capacity
COPY reports ./reports
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 5000 5055
CMD ["rabbitscale", "stack", "--instances", "1"]
