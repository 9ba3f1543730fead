module github.com/flusso/flusso/deploy/demo/search

go 1.26.0

require github.com/flusso/flusso/query v0.0.0

require (
	github.com/opensearch-project/opensearch-go/v4 v4.8.1 // indirect
	golang.org/x/sync v0.23.0 // indirect
)

replace github.com/flusso/flusso/query => ../../../query
