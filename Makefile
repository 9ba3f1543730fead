# flusso — the commands that matter. `make help` lists them.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin

.PHONY: help build test demo services services-down proto bench chaos lint

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/flusso and bin/nats-server
	$(GO) build -o bin/flusso ./cmd/flusso

proto: ## regenerate proto/flussopb from proto/flusso.proto
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	cd proto && PATH="$(GOBIN):$$PATH" protoc --go_out=flussopb --go_opt=paths=source_relative flusso.proto
