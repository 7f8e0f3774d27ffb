# The controller's image: `ecs-infer run` on a spec folder (mounted or git-synced at /specs).
# The sandbox extras (moto, onnxruntime, the BERT model) are not installed here.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.7-slim-bookworm
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home ecs-infer
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2)"]
ENTRYPOINT ["ecs-infer"]
CMD ["run", "/specs", "--metrics-addr", "0.0.0.0:9108"]
