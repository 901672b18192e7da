# syntax=docker/dockerfile:1
# One image for the Stagecraft operator and for the migration runner its Jobs start
# (docs/image.md). Build from the repository root: docker build -t stagecraft:dev .
#
# No Docker engine runs on the development machines: tests/packaging/test_dockerfile.py lints
# this file with hadolint and replays its ARG, ENV, WORKDIR, COPY and RUN steps in a temporary
# directory (the paths below mapped into it), then runs the image's commands. Keep to those
# instructions, shell-form RUN and the top-level paths /opt, /src and /wheels, or teach the test.

# Python 3.11.15, Debian bookworm, slim. The digest is the tag's multi-platform index digest as
# published in several public Dockerfiles; it could not be checked against Docker Hub from here.
# Both stages use the same image, so the venv's `python` link finds the same interpreter.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

FROM ${PYTHON_IMAGE} AS builder
# No pip cache in any layer, no version check against PyPI, no bytecode from the build itself.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# The build tools (pinned pip and setuptools) get a venv of their own that never reaches the
# final stage; the runtime venv is made without pip, and this pip installs into it (--python).
COPY requirements/ requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --requirement requirements/build.txt \
    && python -m venv --without-pip /opt/stagecraft

# Dependencies before the source, so that a code change reuses this layer: exactly the pinned
# set, nothing resolved at build time.
RUN /opt/build/bin/pip --python /opt/stagecraft/bin/python install --no-compile \
        --requirement requirements/runtime.txt

# Stagecraft's own wheel, built with the pinned setuptools and installed without dependencies;
# `pip check` fails the build when the pinned set no longer satisfies pyproject.toml.
# --no-compile above and here, then one compileall with hash-checked bytecode: the root
# filesystem is read-only at run time, so Python can never cache bytecode there itself, and a
# hash-checked .pyc stays valid whatever modification times the files get when they are copied.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/build/bin/pip --python /opt/stagecraft/bin/python install --no-compile --no-deps \
        /wheels/stagecraft-*.whl \
    && /opt/build/bin/pip --python /opt/stagecraft/bin/python check \
    && python -m compileall -q -j 0 --invalidation-mode checked-hash /opt/stagecraft/lib


FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="stagecraft" \
      org.opencontainers.image.description="Database schema migrations for applications on Kubernetes: the kopf operator and the migration runner of its Jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# Only the venv: no build tools, no wheel, no source tree, no pip cache. Its files belong to
# root and are not writable by the user below, read-only root filesystem or not.
COPY --from=builder /opt/stagecraft /opt/stagecraft

# PATH: the Job's command is `python -m stagecraft.operator.job_runner`, which starts
# `stagecraft migrate run`; both must be the venv's. HOME: Stagecraft writes nowhere at run time
# (its test runs it with a read-only HOME), and /tmp is the one writable place a pod with a
# read-only root filesystem gets (the Job mounts an emptyDir there; so should the operator's
# Deployment). PYTHONSAFEPATH: `python -m` does not put the working directory on sys.path.
ENV PATH="/opt/stagecraft/bin:${PATH}" \
    VIRTUAL_ENV=/opt/stagecraft \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1

# The numeric user the Job's pod security context runs as (manifests.NON_ROOT_USER), numeric so
# that Kubernetes can verify runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
WORKDIR /

# The operator's ports (the runner listens on none): kopf's liveness endpoint /healthz, the
# Prometheus /metrics endpoint, the admission webhook server (HTTPS, only with a certificate).
EXPOSE 8080 8081 9443

# No HEALTHCHECK: Kubernetes ignores it (the operator's Deployment probes kopf's /healthz), and
# a migration runner is a batch process with nothing to probe. NONE says this was decided.
HEALTHCHECK NONE

# `stagecraft` is the entry point and the operator its default command, so `docker run IMAGE`
# runs the operator and `docker run IMAGE migrate run ...` the CLI. Kubernetes' `command`
# replaces both: the migration Jobs run `python -m stagecraft.operator.job_runner ... --
# stagecraft migrate run ...`, and the chart may run `python -m stagecraft.operator`.
ENTRYPOINT ["stagecraft"]
CMD ["operator"]
