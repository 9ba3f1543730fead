package config

import _ "embed"

// JSONSchema is the JSON Schema of flusso.toml, for editors and for
// `flusso schema config`.
//
//go:embed config.schema.json
var JSONSchema []byte
