# syntax=docker/dockerfile:1
# The flusso image: one static binary on distroless, non-root. Every role runs from it:
#
#   docker build -t flusso .
#   docker run --rm -v "$PWD/deploy/demo:/etc/flusso:ro" -e DATABASE_URL=... flusso run
#   docker run ... flusso run --nats-url nats://nats:4222 --role assembler
#
# The config is read from /etc/flusso/flusso.toml (FLUSSO_CONFIG); the lock and the
# embedded broker's data go to /var/lib/flusso, the working directory.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# The workspace also holds the query module and the demo's program, which
# the server's build does not read.
ENV GOWORK=off
COPY go.mod go.sum go.work go.work.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/flusso ./cmd/flusso && \
	mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flusso /usr/local/bin/flusso
COPY --from=build --chown=65532:65532 /out/state /var/lib/flusso
WORKDIR /var/lib/flusso
ENV FLUSSO_CONFIG=/etc/flusso/flusso.toml \
	FLUSSO_DATA_DIR=/var/lib/flusso/data \
	FLUSSO_PUBLIC_ADDRESS=0.0.0.0:9464
# 9464: /healthz /readyz /status /metrics. 9465: the control surface (Basic auth); it
# stays on 127.0.0.1 unless FLUSSO_PRIVATE_ADDRESS says otherwise.
EXPOSE 9464 9465
USER 65532:65532
ENTRYPOINT ["flusso"]
CMD ["run"]
