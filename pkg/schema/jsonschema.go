package schema

import _ "embed"

// JSONSchema is the JSON Schema (draft-07, written as YAML) of a
// `*.schema.yml` file, for editors and `flusso schema index`.
//
//go:embed index.schema.yml
var JSONSchema []byte
