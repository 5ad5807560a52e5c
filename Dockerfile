FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rabbitscale ./rabbitscale
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 5000 5055 9464
CMD ["rabbitscale", "stack", "--instances", "1"]
