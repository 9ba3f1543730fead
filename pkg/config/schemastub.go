package config

import (
	"errors"

	"github.com/flusso/flusso/pkg/schema"
)

// TODO(config): replace with schema.Load once pkg/schema provides it.
func loadSchema(path string) (*schema.Index, error) {
	return nil, errors.New("schema loading is not available yet")
}
